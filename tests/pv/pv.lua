-- KSR.pv on $xavp, $xavu, $xavi, $msg, $su and $sel: see pv-lua.cfg.

function ksr_request_route()
	if KSR.pv.get("$rm") == "OPTIONS" then
		KSR.pv.sets("$xavp(a=>x)", "1")
		KSR.pv.seti("$xavp(a[0]=>y)", 2)
		KSR.pv.sets("$xavp(a=>x)", "new")
		KSR.pv.sets("$var(a1x)", KSR.pv.get("$xavp(a[1]=>x)"))
		KSR.pv.seti("$var(a1y)", KSR.pv.get("$xavp(a[1]=>y)") + 1)
		KSR.pv.unset("$xavp(a)")
		KSR.pv.sets("$var(a0x)", KSR.pv.get("$xavp(a=>x)"))
		KSR.pv.sets("$xavi(Cfg=>Key)", "v")
		KSR.pv.sets("$var(ci)", KSR.pv.get("$xavi(CFG=>key)"))
		KSR.pv.sets("$var(fline)", KSR.pv.get("$msg(fline)"))
		KSR.pv.sets("$var(su)", KSR.pv.get("$su"))
		KSR.pv.sets("$var(branch)", KSR.pv.get("$sel(via[1].branch)"))
		KSR.pv.sets("$var(touser)", KSR.pv.get("$sel(to.uri.user)"))
		if KSR.pv.is_null("$xavp(nothing=>here)") then
			KSR.pv.seti("$var(null_ok)", 1)
		end
		KSR.sl.sl_send_reply(200, "OK")
		return
	end
	KSR.pv.sets("$xavp(call=>caller)", KSR.pv.get("$fU"))
	KSR.pv.seti("$xavu(once=>n)", 7)
	KSR.tm.t_on_failure("ksr_failure_route")
	KSR.setdsturi("sip:127.0.0.1:5070")
	KSR.tm.t_relay()
end

function ksr_failure_route()
	KSR.pv.sets("$var(caller)", KSR.pv.get("$xavp(call=>caller)"))
	KSR.pv.seti("$var(once)", KSR.pv.get("$xavu(once=>n)"))
end
