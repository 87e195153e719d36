-- Lua twin of examples/carrier-edge.cfg (Kamailio KEMI): see carrier-edge.cfg beside it.

local FLT_ACC = 1
local FLT_ACCMISSED = 2
local FLT_ACCFAILED = 3

local function cfg(name)
	return KSR.pv.get("$sel(cfg_get.edge." .. name .. ")")
end

local function relay()
	if KSR.tm.t_relay() < 0 then
		KSR.sl.sl_reply_error()
	end
	KSR.x.exit()
end

-- flood detection per source and a ban for a while; carriers are trusted
local function reqinit()
	if KSR.dispatcher.ds_is_from_list(cfg("carrier_set")) < 0 then
		local src = KSR.kx.get_srcip()
		if KSR.htable.sht_is_null("ipban", src) < 0 then
			-- already banned: not even an answer
			KSR.x.exit()
		end
		if KSR.pike.pike_check_req() < 0 then
			KSR.log("alert", "ALERT: pike blocking " .. KSR.kx.get_method() .. " from " .. KSR.kx.get_furi()
				.. " (IP:" .. src .. ":" .. KSR.kx.get_srcport() .. ")")
			KSR.pv.seti("$sht(ipban=>" .. src .. ")", 1)
			KSR.x.exit()
		end
	end
	if KSR.maxfwd.process_maxfwd(10) < 0 then
		KSR.sl.sl_send_reply(483, "Too Many Hops")
		KSR.x.exit()
	end
	if KSR.is_OPTIONS() and KSR.is_myself_ruri() and KSR.pv.is_null("$rU") then
		KSR.sl.sl_send_reply(200, "Keepalive")
		KSR.x.exit()
	end
	if KSR.sanity.sanity_check() < 0 then
		KSR.warn("malformed request from " .. KSR.kx.get_srcip() .. ":" .. KSR.kx.get_srcport() .. " dropped")
		KSR.x.exit()
	end
end

local function withindlg()
	if KSR.siputils.has_totag() < 0 then
		return
	end
	if KSR.rr.loose_route() > 0 then
		if KSR.is_BYE() then
			KSR.setflag(FLT_ACC)
			KSR.setflag(FLT_ACCFAILED)
		end
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

local function auth()
	local rc = KSR.auth_db.proxy_authorize(KSR.pv.get("$fd"), "subscriber")
	if rc < 0 then
		KSR.notice("auth failed for " .. KSR.pv.get("$fu") .. " from " .. KSR.kx.get_srcip() .. " (rc=" .. rc .. ")")
		KSR.auth.proxy_challenge(KSR.pv.get("$fd"), 0)
		KSR.x.exit()
	end
	KSR.auth.consume_credentials()
end

local function carrier()
	if KSR.dispatcher.ds_select_dst(cfg("carrier_set"), cfg("ds_alg")) < 0 then
		KSR.warn(KSR.kx.get_callid() .. ": no carrier available")
		KSR.sl.sl_send_reply(503, "No Carrier Available")
		KSR.x.exit()
	end
	KSR.info("edge: " .. KSR.kx.get_callid() .. " from " .. KSR.kx.get_fuser() .. " to " .. KSR.pv.gete("$rU")
		.. " via " .. KSR.kx.get_duri())
	KSR.tm.t_on_failure("next_carrier")
	relay()
end

function ksr_request_route()
	reqinit()
	withindlg()

	if KSR.is_CANCEL() then
		if KSR.tm.t_check_trans() > 0 then
			relay()
		end
		KSR.x.exit()
	end
	-- retransmissions of a request being processed are absorbed here
	if not KSR.is_ACK() then
		if KSR.tmx.t_precheck_trans() > 0 then
			KSR.tm.t_check_trans()
			KSR.x.exit()
		end
		KSR.tm.t_check_trans()
	end

	if KSR.dispatcher.ds_is_from_list(cfg("carrier_set")) > 0 then
		KSR.sl.sl_send_reply(403, "No Inbound Service")
		KSR.x.exit()
	end
	if not KSR.is_INVITE() then
		KSR.sl.sl_send_reply(405, "Method Not Allowed")
		KSR.x.exit()
	end
	auth()

	KSR.hdr.remove("Route")
	KSR.rr.record_route()
	KSR.setflag(FLT_ACC)
	KSR.setflag(FLT_ACCFAILED)
	-- FLT_ACCMISSED is set in next_carrier: acc writes a missed call at the first
	-- failed attempt that has it, and a call failing over is not missed yet
	carrier()
end

function next_carrier()
	-- a missed call (written with the final reply) unless another carrier takes it
	KSR.setflag(FLT_ACCMISSED)
	if KSR.tm.t_is_canceled() > 0 then
		return
	end
	-- a carrier that does not answer at all is taken out and probed back
	if KSR.tm.t_branch_timeout() > 0 and KSR.tm.t_branch_replied() < 0 then
		KSR.dispatcher.ds_mark_dst("ip")
	end
	if KSR.tm.t_check_status("408|5[0-9][0-9]") > 0 and KSR.dispatcher.ds_next_dst() > 0 then
		KSR.info("edge: " .. KSR.kx.get_callid() .. " failing over to " .. KSR.kx.get_duri() .. " after "
			.. KSR.pv.get("$T_reply_code"))
		KSR.resetflag(FLT_ACCMISSED)
		KSR.tm.t_on_failure("next_carrier")
		KSR.tm.t_relay()
	end
end

function ksr_dispatcher_event(evname)
	if evname == "dispatcher:dst-down" then
		KSR.warn("carrier down: " .. KSR.pv.getw("$ru"))
	elseif evname == "dispatcher:dst-up" then
		KSR.notice("carrier up: " .. KSR.pv.getw("$ru"))
	end
end
