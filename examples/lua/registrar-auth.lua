-- Lua twin of examples/registrar-auth.cfg (Kamailio KEMI): see registrar-auth.cfg beside it.

local FLT_ACC = 1

local function relay()
	if KSR.is_INVITE() then
		KSR.tm.t_on_failure("manage_failure")
	end
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
	if KSR.sanity.sanity_check() < 0 then
		KSR.x.exit()
	end
end

local function withindlg()
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

local function auth()
	if KSR.is_REGISTER() or KSR.is_myself_furi() then
		-- authenticate requests from our own users
		local rc = KSR.auth_db.auth_check(KSR.pv.get("$fd"), "subscriber", 1)
		if rc < 0 then
			KSR.notice("auth failed for " .. KSR.pv.get("$fu") .. " from " .. KSR.pv.get("$si") .. " (rc=" .. rc .. ")")
			KSR.auth.auth_challenge(KSR.pv.get("$fd"), 0)
			KSR.x.exit()
		end
		KSR.auth.consume_credentials()
	end
	if not KSR.is_REGISTER() and not KSR.is_myself_furi() and not KSR.is_myself_ruri() then
		KSR.sl.sl_send_reply(403, "Not relaying")
		KSR.x.exit()
	end
end

local function location()
	local rc = KSR.registrar.lookup("location")
	if rc < 0 then
		KSR.tm.t_newtran()
		if rc == -1 or rc == -3 then
			KSR.tm.t_reply(404, "Not Found")
			KSR.x.exit()
		elseif rc == -2 then
			KSR.tm.t_reply(405, "Method Not Allowed")
			KSR.x.exit()
		end
	end
	KSR.setflag(FLT_ACC)
	relay()
end

function ksr_request_route()
	reqinit()

	if KSR.siputils.has_totag() > 0 then
		withindlg()
		KSR.x.exit()
	end

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

	auth()

	if KSR.is_REGISTER() then
		if KSR.registrar.save("location") < 0 then
			KSR.sl.sl_reply_error()
		end
		KSR.x.exit()
	end

	if KSR.pv.is_null("$rU") then
		KSR.sl.sl_send_reply(484, "Address Incomplete")
		KSR.x.exit()
	end

	KSR.rr.record_route()
	location()
end

function manage_failure()
	if KSR.tm.t_is_canceled() > 0 then
		return
	end
	if KSR.tm.t_check_status("486|408") > 0 then
		KSR.info("call to " .. KSR.pv.get("$ru") .. " not answered: " .. KSR.pv.get("$T_reply_code"))
	end
end
