// A browser SIP library (SIP.js) on Node, with the `ws` package as its WebSocket: it
// registers with digest authentication over the WebSocket URL given, then calls the target
// (authenticated again if challenged), hangs up once the call is answered and waits for the
// BYE's 200. Media is not Node's: a fixed SDP stands in for the browser's WebRTC.
// Prints one line per step (REGISTERED, ESTABLISHED, BYE 200, UNREGISTERED); exits 0 when
// all went through, 1 otherwise. Run by tests/tests/websocket.rs.
//
// node client.mjs <ws-url> <user> <password> <domain> <target-uri>
import { WebSocket } from "ws";
import { Inviter, Registerer, RegistererState, SessionState, UserAgent } from "sip.js";

globalThis.WebSocket = WebSocket;

const [server, user, password, domain, target] = process.argv.slice(2);
if (!target) {
  console.error("usage: client.mjs <ws-url> <user> <password> <domain> <target-uri>");
  process.exit(2);
}

const LIMIT_MS = 20000;
setTimeout(() => {
  console.error("FAILED: not done within", LIMIT_MS, "ms");
  process.exit(1);
}, LIMIT_MS).unref();

const SDP = [
  "v=0",
  "o=- 1 1 IN IP4 127.0.0.1",
  "s=-",
  "c=IN IP4 127.0.0.1",
  "t=0 0",
  "m=audio 6000 RTP/AVP 0",
  "a=rtpmap:0 PCMU/8000",
  "",
].join("\r\n");

// The Session Description Handler interface of SIP.js, without media.
class FixedSdp {
  close() {}
  getDescription() {
    return Promise.resolve({ body: SDP, contentType: "application/sdp" });
  }
  hasDescription(contentType) {
    return contentType === "application/sdp";
  }
  setDescription(sdp) {
    return sdp.startsWith("v=0") ? Promise.resolve() : Promise.reject(new Error("bad SDP"));
  }
  sendDtmf() {
    return false;
  }
}

const ua = new UserAgent({
  uri: UserAgent.makeURI(`sip:${user}@${domain}`),
  transportOptions: { server },
  authorizationUsername: user,
  authorizationPassword: password,
  sessionDescriptionHandlerFactory: () => new FixedSdp(),
  logLevel: "error",
});

function fail(why) {
  console.error("FAILED:", why);
  process.exit(1);
}

function waitFor(register, wanted) {
  return new Promise((resolve) => {
    if (register.state === wanted) return resolve();
    register.stateChange.addListener((s) => {
      if (s === wanted) resolve();
    });
  });
}

try {
  await ua.start();
  const registerer = new Registerer(ua, { expires: 300 });
  await registerer.register({
    requestDelegate: {
      onReject: (r) => fail(`REGISTER answered ${r.message.statusCode}`),
    },
  });
  await waitFor(registerer, RegistererState.Registered);
  console.log("REGISTERED");

  const uri = UserAgent.makeURI(target);
  if (!uri) fail(`bad target ${target}`);
  const inviter = new Inviter(ua, uri);
  const ended = new Promise((resolve) => {
    inviter.stateChange.addListener((s) => {
      if (s === SessionState.Established) {
        console.log("ESTABLISHED");
        setTimeout(() => {
          inviter
            .bye({
              requestDelegate: {
                onAccept: (r) => {
                  console.log(`BYE ${r.message.statusCode}`);
                  resolve();
                },
                onReject: (r) => fail(`BYE answered ${r.message.statusCode}`),
              },
            })
            .catch((e) => fail(`BYE: ${e}`));
        }, 200);
      } else if (s === SessionState.Terminated && inviter.state !== SessionState.Established) {
        // Terminated without BYE's 200 is caught by the limit.
      }
    });
  });
  await inviter.invite({
    requestDelegate: {
      onReject: (r) => fail(`INVITE answered ${r.message.statusCode}`),
    },
  });
  await ended;

  await registerer.unregister();
  await waitFor(registerer, RegistererState.Unregistered);
  console.log("UNREGISTERED");
  await ua.stop();
  process.exit(0);
} catch (e) {
  fail(e && e.stack ? e.stack : String(e));
}
