// The hall's screen: plays the programme from the hall daemon by WHEP, full screen on the projector PC.
// It never shows a frozen frame without saying so: when no new frame has been decoded for a second the
// picture is covered by "reconnecting", and the page reconnects by itself (with back-off) when the
// connection fails. The media token comes in the URL fragment (never sent to any server in a URL).

const STALL_MS = 1000;
const $ = (s) => document.querySelector(s);
const params = new URLSearchParams(location.hash.slice(1));
const token = params.get("token") || "";
const stream = params.get("stream") || "programme";
const TEXT = {
  connecting: ["Đang kết nối…", "Connecting…"],
  reconnecting: ["Mất tín hiệu — đang kết nối lại…", "Signal lost — reconnecting…"],
  no_token: ["Thiếu mã truy cập trong địa chỉ trang", "The page address has no access token"],
  refused: ["Máy chủ từ chối", "Refused by the server"],
};

// WHIP and WHEP without trickle ICE: the offer carries every candidate, then one POST
async function postOffer(peer, url, bearer) {
  await peer.setLocalDescription(await peer.createOffer());
  await new Promise((resolve) => {
    if (peer.iceGatheringState === "complete") return resolve();
    peer.onicegatheringstatechange = () => peer.iceGatheringState === "complete" && resolve();
    setTimeout(resolve, 2000);
  });
  return fetch(url, { method: "POST", body: peer.localDescription.sdp,
    headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${bearer}` } });
}

let pc = null;
let resource = null;
let lastFrames = 0;
let lastProgress = 0;
let backoff = 500;
let state = "";

function show(which, detail = "") {
  state = which;
  const box = $("#status");
  box.dataset.state = which;
  box.hidden = which === "playing";
  if (which !== "playing") {
    $("#status-text").textContent = TEXT[which][0];
    $("#status-detail").textContent = TEXT[which][1] + (detail ? ` (${detail})` : "");
  }
}

function claims() {
  try { return JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))); } catch { return {}; }
}

async function connect() {
  if (pc) { pc.close(); pc = null; }
  pc = new RTCPeerConnection({ iceServers: [] });
  window.dcPlayer = pc;
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  const media = new MediaStream();
  $("#programme").srcObject = media;
  pc.ontrack = (ev) => media.addTrack(ev.track);
  pc.onconnectionstatechange = () => {
    if (pc && (pc.connectionState === "failed" || pc.connectionState === "closed")) retry("connection " + pc.connectionState);
  };
  const resp = await postOffer(pc, `/whep/${encodeURIComponent(stream)}`, token);
  if (resp.status === 401 || resp.status === 403) {
    show("refused", `${resp.status}: ${(await resp.text()).slice(0, 120)}`);
    return false;
  }
  if (resp.status !== 201) throw new Error(`WHEP ${resp.status}`);
  resource = new URL(resp.headers.get("Location"), location.href).href;
  await pc.setRemoteDescription({ type: "answer", sdp: await resp.text() });
  lastProgress = performance.now();
  return true;
}

let retrying = false;
async function retry(why) {
  if (retrying) return;
  retrying = true;
  show("reconnecting", why);
  if (resource) { fetch(resource, { method: "DELETE", headers: { Authorization: `Bearer ${token}` } }).catch(() => {}); resource = null; }
  for (;;) {
    await new Promise((r) => setTimeout(r, backoff));
    backoff = Math.min(backoff * 2, 5000);
    try { if (await connect()) break; else { retrying = false; return; } } catch (e) { show("reconnecting", String(e.message || e)); }
  }
  retrying = false;
}

async function watch() {
  if (!pc || retrying) return;
  let frames = 0;
  (await pc.getStats()).forEach((s) => { if (s.type === "inbound-rtp" && s.kind === "video") frames = s.framesDecoded || 0; });
  const now = performance.now();
  if (frames > lastFrames) {
    lastFrames = frames;
    lastProgress = now;
    backoff = 500;
    if (state !== "playing") show("playing");
  } else if (now - lastProgress > STALL_MS && state === "playing") {
    show("reconnecting", "no picture for " + Math.round((now - lastProgress) / 1000) + " s");
  }
  if (now - lastProgress > 8000 && pc.connectionState !== "connecting") retry("no picture for 8 s");
}

$("#sound").addEventListener("click", () => { const v = $("#programme"); v.muted = false; v.play(); $("#sound").hidden = true; });
const c = claims();
$("#title").textContent = [c.aud && c.aud !== "*" ? c.aud : "", stream].filter(Boolean).join(" · ");

// the floor: another hall speaking, in a corner of the screen, while it holds the floor.
// The corner's subscription to the hall daemon's "floor" stream is opened with the page and kept
// open, whoever speaks and while nobody does: a new speaker then costs only its first keyframe,
// not a new connection. The corner shows a picture only while the daemon says someone holds the
// floor, only once that speaker's own first keyframe has been decoded (never the previous
// speaker's last picture under the new name), and not while its picture is frozen. A hidden
// corner's <video> is detached from the stream: given it again, it shows nothing until its next
// frame (a <video> shown again would first show the last frame it had, however old).
const floorToken = params.get("floor") || "";
const FLOOR_WAIT_MS = 5000;  // a speaker announced and no picture after this: subscribe again
let floorPc = null;
let floorResource = null;
let floorBackoff = 500;
let floorSpeaker = "";  // who holds the floor, as the hall daemon says ("": nobody, or this hall)
let floorSince = { frames: 0, keyframes: 0, at: 0 };  // the decoder's counts when that changed
let floorFrames = 0;  // the decoder's counts at the last look
let floorKeyframes = 0;
let floorProgress = 0;  // when the last new frame was decoded
let floorRefused = false;
let floorMedia = null;  // the subscription's tracks, for the corner's <video>
let floorOn = false;  // the corner's <video> has the stream (it shows from its first frame)

function floorShow(on) {
  if (on === floorOn && (!on || $("#floor").dataset.speaker === floorSpeaker)) return;
  floorOn = on;
  const v = $("#floor");
  v.hidden = true;
  $("#floor-name").textContent = "";
  v.dataset.speaker = on ? floorSpeaker : "";
  v.srcObject = on ? floorMedia : null;  // shown by its "loadeddata", with the frame it then has
}
$("#floor").addEventListener("loadeddata", () => {
  if (!floorOn) return;
  $("#floor").hidden = false;
  $("#floor-name").textContent = `🎤 ${floorSpeaker}`;
});

function floorAnnounced(speaker) {  // from the hall daemon (its info, pushed by long poll)
  if (speaker === floorSpeaker) return;
  floorSpeaker = speaker;
  // the counts at the last look (at most a quarter of a second old): the new speaker's media
  // comes after the daemon's word, so its first keyframe is counted above these
  floorSince = { frames: floorFrames, keyframes: floorKeyframes, at: performance.now() };
  floorShow(false);  // until this speaker's own keyframe is decoded (floorWatch)
  floorWatch().catch(() => {});
}

function floorClose() {
  const pc = floorPc;
  floorPc = window.dcFloor = null;
  if (pc) pc.close();
  if (floorResource) {
    fetch(floorResource, { method: "DELETE", headers: { Authorization: `Bearer ${floorToken}` } }).catch(() => {});
    floorResource = null;
  }
}

async function floorConnect() {
  floorClose();
  floorShow(false);
  const pc = floorPc = window.dcFloor = new RTCPeerConnection({ iceServers: [] });
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  const media = floorMedia = new MediaStream();
  pc.ontrack = (ev) => media.addTrack(ev.track);
  pc.onconnectionstatechange = () => {
    if (pc === floorPc && (pc.connectionState === "failed" || pc.connectionState === "closed")) floorRetry();
  };
  floorFrames = floorKeyframes = 0;
  floorSince = { frames: 0, keyframes: 0, at: performance.now() };  // a new decoder: its first keyframe is the speaker's
  try {
    const resp = await postOffer(pc, "/whep/floor", floorToken);
    if (pc !== floorPc) return;
    if (resp.status === 401 || resp.status === 403) {  // a token refused stays refused: say so, do not hammer
      floorRefused = true;
      $("#status-detail").textContent = `floor: ${resp.status}: ${(await resp.text()).slice(0, 120)}`;
      return;
    }
    if (resp.status !== 201) throw new Error(`floor WHEP ${resp.status}`);
    floorResource = new URL(resp.headers.get("Location"), location.href).href;
    await pc.setRemoteDescription({ type: "answer", sdp: await resp.text() });
    floorBackoff = 500;
  } catch (e) {
    if (pc === floorPc) floorRetry();
  }
}

let floorRetrying = false;
function floorRetry() {
  if (floorRetrying || floorRefused) return;
  floorRetrying = true;
  floorClose();
  floorShow(false);
  setTimeout(() => { floorRetrying = false; floorConnect(); }, floorBackoff);
  floorBackoff = Math.min(floorBackoff * 2, 5000);
}

async function floorWatch() {
  const pc = floorPc;
  if (!pc) return;
  let frames = 0, keyframes = 0;
  (await pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") { frames = s.framesDecoded || 0; keyframes = s.keyFramesDecoded || 0; }
  });
  if (pc !== floorPc) return;
  const now = performance.now();
  floorKeyframes = keyframes;
  if (frames > floorFrames) { floorFrames = frames; floorProgress = now; }
  const on = !!floorSpeaker && keyframes > floorSince.keyframes && frames > floorSince.frames && now - floorProgress <= STALL_MS;
  floorShow(on);
  if (floorSpeaker && !on && now - Math.max(floorSince.at, floorProgress) > FLOOR_WAIT_MS && pc.connectionState === "connected") {
    floorRetry();  // a speaker and no picture for this long: the subscription is not what it should be
  }
}

function floorLoop() {  // often while a speaker's first picture is awaited, calmly otherwise
  floorWatch().catch(() => {}).finally(() => setTimeout(floorLoop, floorSpeaker && !floorOn ? 40 : 250));
}

// the hall holds the floor and its camera is this PC's (the daemon's camera "browser"): capture it
// and publish it to the daemon, which sends it up to its relay
const cameraToken = params.get("camera") || "";
let camPc = null;
let camResource = null;
let speakingOn = "";

async function speak(stream) {
  if (stream === speakingOn || !cameraToken) return;
  speakingOn = stream;
  if (camPc) {
    camPc.getSenders().forEach((s) => s.track && s.track.stop());
    camPc.close(); camPc = null; window.dcCamera = null;
    if (camResource) fetch(camResource, { method: "DELETE", headers: { Authorization: `Bearer ${cameraToken}` } }).catch(() => {});
    camResource = null;
  }
  $("#title").classList.toggle("speaking", !!stream);
  if (!stream) return;
  try {
    const media = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 }, audio: true });
    const pc = camPc = window.dcCamera = new RTCPeerConnection({ iceServers: [] });
    media.getTracks().forEach((tr) => pc.addTransceiver(tr, { direction: "sendonly" }));
    const resp = await postOffer(pc, "/whip/camera", cameraToken);
    if (resp.status !== 201) throw new Error(`WHIP ${resp.status}`);
    camResource = new URL(resp.headers.get("Location"), location.href).href;
    await pc.setRemoteDescription({ type: "answer", sdp: await resp.text() });
  } catch (e) {
    speakingOn = "";  // tried again on the next poll
    $("#status-detail").textContent = `camera: ${e.message || e}`;
  }
}

// "raise hand": the hall asks the operators for the floor (the queue in their console)
function showHand(up) {
  const b = $("#hand");
  b.dataset.up = String(!!up);
  b.textContent = up ? "✋ Đang xin phát biểu — bấm để rút / Hand raised — click to lower" : "✋ Xin phát biểu / Raise hand";
}
$("#hand").addEventListener("click", async () => {
  const up = $("#hand").dataset.up !== "true";
  try {
    const r = await fetch(`/hand?stream=${encodeURIComponent(stream)}`, {
      method: "POST", headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" }, body: JSON.stringify({ up }),
    });
    if (r.ok) showHand(up);
    else $("#status-detail").textContent = `hand: ${r.status}`;
  } catch (e) { $("#status-detail").textContent = `hand: ${e.message || e}`; }
});

function applyInfo(i) {  // the hall and the session it follows now (sessions change without a reload)
  const text = [i.hall, i.session && i.title ? `${i.session} — ${i.title}` : ""].filter(Boolean).join(" · ");
  if (text) $("#title").textContent = text;
  $("#title").dataset.session = i.session || "";
  if (floorToken) floorAnnounced(i.floor || "");
  speak(i.speaking || "");
  showHand(i.hand);
}

// the hall daemon next door answers at once the first time, then when something changes (a long
// poll): a new speaker reaches the page as soon as the daemon knows of it
async function infoLoop() {
  let version = -1;
  for (;;) {
    try {
      const since = version >= 0 ? `&since=${version}` : "";
      const r = await fetch(`/player-info?stream=${encodeURIComponent(stream)}${since}`,
                            { headers: { Authorization: `Bearer ${token}` } });
      if (!r.ok) { version = -1; await new Promise((res) => setTimeout(res, r.status === 401 || r.status === 403 ? 5000 : 1000)); continue; }
      const i = await r.json();
      version = Number.isInteger(i.version) ? i.version : -1;
      applyInfo(i);
      if (version < 0) await new Promise((res) => setTimeout(res, 250));  // a server without long polls
    } catch {
      version = -1;  // the hall daemon is restarting: keep the last title; ask afresh (it counts anew)
      await new Promise((res) => setTimeout(res, 1000));
    }
  }
}
if (!token) show("no_token");
else {
  show("connecting");
  connect().catch((e) => retry(String(e.message || e)));
  setInterval(watch, 250);
  infoLoop();
  if (floorToken) { floorConnect(); floorLoop(); }
}
window.addEventListener("hashchange", () => location.reload());  // a new token or stream: start again
