-- Lua twin of examples/carrier-lcr.cfg (Kamailio KEMI): see carrier-lcr.cfg beside it.

local function cfg(name)
	return KSR.pv.get("$sel(cfg_get.carrier." .. name .. ")")
end

local function auth()
	local rc = KSR.auth_db.proxy_authorize(KSR.pv.get("$fd"), "subscriber")
	if rc < 0 then
		KSR.notice("auth failed for " .. KSR.pv.get("$fu") .. " from " .. KSR.pv.get("$si") .. " (rc=" .. rc .. ")")
		KSR.auth.proxy_challenge(KSR.pv.get("$fd"), 0)
		KSR.x.exit()
	end
	KSR.auth.consume_credentials()
end

local function lcr()
	local rc = KSR.lcr.load_gws(cfg("lcr_id"), KSR.pv.gete("$rU"), KSR.pv.get("$fu"))
	if rc == 2 then
		KSR.notice("lcr: " .. KSR.pv.get("$ci") .. " no route to " .. KSR.pv.gete("$rU"))
		KSR.sl.sl_send_reply(404, "No Route To That Number")
		KSR.x.exit()
	end
	if rc < 0 or KSR.lcr.next_gw() < 0 then
		KSR.sl.sl_send_reply(500, "Cannot Route")
		KSR.x.exit()
	end
	KSR.info("lcr: " .. KSR.pv.get("$ci") .. " via " .. KSR.pv.getw("$avp(lcr_tag)") .. " to " .. KSR.pv.get("$ru"))
	KSR.rr.record_route()
	KSR.tm.t_on_failure("next_carrier")
	if KSR.tm.t_relay() < 0 then
		KSR.sl.sl_reply_error()
	end
end

function ksr_request_route()
	if KSR.maxfwd.process_maxfwd(10) < 0 then
		KSR.sl.sl_send_reply(483, "Too Many Hops")
		KSR.x.exit()
	end
	if KSR.sanity.sanity_check() < 0 then
		KSR.x.exit()
	end
	if KSR.siputils.has_totag() > 0 then
		if KSR.rr.loose_route() > 0 then
			KSR.tm.t_relay()
		elseif KSR.is_ACK() and KSR.tm.t_check_trans() > 0 then
			KSR.tm.t_relay()
		end
		KSR.x.exit()
	end
	if KSR.is_CANCEL() then
		if KSR.tm.t_check_trans() > 0 then
			KSR.tm.t_relay()
		end
		KSR.x.exit()
	end
	if KSR.lcr.from_any_gw() > 0 then
		KSR.sl.sl_send_reply(403, "No Inbound Service")
		KSR.x.exit()
	end
	if not KSR.is_INVITE() then
		KSR.sl.sl_send_reply(405, "Method Not Allowed")
		KSR.x.exit()
	end
	auth()
	lcr()
end

function next_carrier()
	if KSR.tm.t_is_canceled() > 0 then
		return
	end
	if KSR.tm.t_check_status("408") > 0 then
		KSR.lcr.defunct_gw(cfg("defunct_period"))
	end
	if KSR.tm.t_check_status("408|5[0-9][0-9]") > 0 and KSR.lcr.next_gw() > 0 then
		KSR.info("lcr: " .. KSR.pv.get("$ci") .. " failing over via " .. KSR.pv.getw("$avp(lcr_tag)") .. " to "
			.. KSR.pv.get("$ru") .. " after " .. KSR.pv.get("$T_reply_code"))
		KSR.tm.t_on_failure("next_carrier")
		KSR.tm.t_relay()
	end
end
