-- Lua twin of examples/load-balancer.cfg (Kamailio KEMI): see load-balancer.cfg beside it.

local function cfg(name)
	return KSR.pv.get("$sel(cfg_get.lb." .. name .. ")")
end

local function relay()
	if KSR.tm.t_relay() < 0 then
		KSR.sl.sl_reply_error()
	end
	KSR.x.exit()
end

local function reqinit()
	if KSR.maxfwd.process_maxfwd(10) < 0 then
		KSR.sl.sl_send_reply(483, "Too Many Hops")
		KSR.x.exit()
	end
	if KSR.is_OPTIONS() and KSR.is_myself_ruri() and KSR.pv.is_null("$rU") then
		KSR.sl.sl_send_reply(200, "Keepalive")
		KSR.x.exit()
	end
	if KSR.sanity.sanity_check(1511, 7) < 0 then
		KSR.warn("malformed request from " .. KSR.pv.get("$si") .. ":" .. KSR.pv.get("$sp") .. " dropped")
		KSR.x.exit()
	end
end

local function withindlg()
	if KSR.siputils.has_totag() < 0 then
		return
	end
	if KSR.rr.loose_route() > 0 then
		relay()
	end
	if KSR.is_ACK() then
		if KSR.tm.t_check_trans() > 0 then
			relay()
		end
		KSR.x.exit()
	end
	KSR.sl.sl_send_reply(404, "Not here")
	KSR.x.exit()
end

local function dispatch()
	if KSR.dispatcher.ds_select_dst(cfg("pbx_set"), cfg("algorithm")) < 0 then
		KSR.warn(KSR.pv.get("$ci") .. ": no PBX available")
		KSR.sl.sl_send_reply(503, "No PBX Available")
		KSR.x.exit()
	end
	KSR.info(KSR.pv.get("$ci") .. ": dispatched to " .. KSR.pv.getw("$du"))
	KSR.tm.t_on_failure("rtf_dispatch")
	relay()
end

function ksr_request_route()
	reqinit()

	if KSR.is_CANCEL() then
		if KSR.tm.t_check_trans() > 0 then
			relay()
		end
		KSR.x.exit()
	end

	withindlg()

	if not KSR.is_ACK() then
		if KSR.tmx.t_precheck_trans() > 0 then
			KSR.tm.t_check_trans()
			KSR.x.exit()
		end
		KSR.tm.t_check_trans()
	end

	KSR.textops.remove_hf("Route")
	if KSR.is_method_in("IS") then
		KSR.rr.record_route()
	end

	-- a PBX calling out: routed by its R-URI
	if KSR.dispatcher.ds_is_from_list(cfg("pbx_set")) > 0 then
		KSR.info(KSR.pv.get("$ci") .. ": from PBX (set " .. KSR.pv.getw("$avp(dsset)") .. ") to " .. KSR.pv.get("$ru"))
		relay()
	end

	dispatch()
end

function rtf_dispatch()
	if KSR.tm.t_is_canceled() > 0 then
		return
	end
	-- a PBX that does not answer at all is taken out and probed back
	if KSR.tm.t_branch_timeout() > 0 and KSR.tm.t_branch_replied() < 0 then
		KSR.dispatcher.ds_mark_dst("ip")
	end
	if KSR.tm.t_check_status("408|5[0-9][0-9]") > 0 then
		if KSR.dispatcher.ds_next_dst() > 0 then
			KSR.info(KSR.pv.get("$ci") .. ": failing over to " .. KSR.pv.getw("$du") .. " after " .. KSR.pv.get("$T_reply_code"))
			KSR.tm.t_on_failure("rtf_dispatch")
			if KSR.tm.t_relay() < 0 then
				KSR.tm.t_reply(500, "Failover Failed")
			end
		end
	end
end

-- dispatcher's events (modparam("dispatcher", "event_callback", "ksr_dispatcher_event"))
function ksr_dispatcher_event(evname)
	if evname == "dispatcher:dst-down" then
		KSR.warn("PBX down: " .. KSR.pv.getw("$ru"))
	elseif evname == "dispatcher:dst-up" then
		KSR.notice("PBX up: " .. KSR.pv.getw("$ru"))
	end
end
