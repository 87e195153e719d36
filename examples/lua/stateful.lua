-- Lua twin of examples/stateful.cfg (Kamailio KEMI): see stateful.cfg beside it.

local UAS1 = nil
local UAS2 = nil

local function destinations()
	if UAS1 == nil then
		UAS1 = KSR.pv.get("$sel(cfg_get.stateful.uas1)")
		UAS2 = KSR.pv.get("$sel(cfg_get.stateful.uas2)")
	end
end

-- $du = dst, over the transport the request came in on
local function setdst(dst)
	if KSR.pv.get("$pr") == "tcp" then
		KSR.setdsturi(dst .. ";transport=tcp")
	else
		KSR.setdsturi(dst)
	end
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

-- Requests within a dialog go where the Route set says.
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

function ksr_request_route()
	destinations()
	reqinit()

	-- CANCEL: relayed hop by hop to the branches of the INVITE it matches
	if KSR.is_CANCEL() then
		if KSR.tm.t_check_trans() > 0 then
			relay()
		end
		KSR.x.exit()
	end

	withindlg()

	-- retransmissions of a request whose transaction exists are absorbed here
	if not KSR.is_ACK() then
		if KSR.tmx.t_precheck_trans() > 0 then
			KSR.tm.t_check_trans()
			KSR.x.exit()
		end
		KSR.tm.t_check_trans()
	end

	-- initial requests: no preloaded routes, stay in the path of the dialog
	KSR.textops.remove_hf("Route")
	if KSR.is_method_in("IS") then
		KSR.rr.record_route()
	end

	if KSR.pv.get("$rU") == "fork" then
		-- parallel forking: one branch to UAS2, the main branch to UAS1
		setdst(UAS2)
		KSR.corex.append_branch()
		setdst(UAS1)
		relay()
	end
	-- serial forking: UAS1 first, failover pops $avp(failover)
	KSR.pv.sets("$avp(failover)", UAS2)
	setdst(UAS1)
	KSR.tm.t_on_failure("manage_failure")
	relay()
end

function manage_failure()
	-- the caller gave up: its 487 goes back, no new branch
	if KSR.tm.t_is_canceled() > 0 then
		return
	end
	-- busy, timed out or a server error: try the next destination, if any
	if KSR.tm.t_check_status("486|408|5[0-9][0-9]") < 0 then
		return
	end
	destinations()
	local next_dst = KSR.pv.get("$avp(failover)")
	if next_dst == nil then
		KSR.notice(KSR.pv.get("$ci") .. ": no destination left after " .. KSR.pv.get("$T_reply_code"))
		return
	end
	if KSR.tm.t_branch_timeout() > 0 then
		KSR.notice(KSR.pv.get("$ci") .. ": " .. KSR.pv.getw("$du") .. " timed out")
	end
	KSR.pv.unset("$avp(failover)")
	setdst(next_dst)
	KSR.info(KSR.pv.get("$ci") .. ": failing over to " .. KSR.pv.get("$du") .. " after " .. KSR.pv.get("$T_reply_code"))
	KSR.tm.t_on_failure("manage_failure")
	if KSR.tm.t_relay() < 0 then
		KSR.tm.t_reply(500, "Failover Failed")
	end
end
