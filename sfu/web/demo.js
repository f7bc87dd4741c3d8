// demo.js: the SFU's demo page, built only on the public API of sfu.js.
// Open it in two tabs, join the same room, and each sees and hears the other.
// Through ./client/ so that defaultURL() finds /ws beside it, also under a proxy prefix.
import { join, defaultURL } from "./client/sfu.js";

const $ = (sel) => document.querySelector(sel);
const form = $("#join");
const controls = $("#controls");
const tilesEl = $("#tiles");
const statusEl = $("#status");
const micBtn = $("#mute-mic");
const camBtn = $("#mute-cam");
const shareBtn = $("#share");
const chatEl = $("#chat");
const messagesEl = $("#messages");
const sayForm = $("#say");
const captionsSelect = $("#captions");
const field = (name) => form.elements.namedItem(name);

/**
 * The page's state, also on window.demo for the console (and the browser
 * tests, which read the peer connections' stats from session and share a
 * canvas as the screen through shareScreen).
 */
const demo = { session: null, local: null, screen: null, tiles: new Map(), shareScreen, names: new Map(), dubs: new Map(), captions: [] };
window.demo = demo;

// ?room= presets the room; ?token= carries a join token for servers that
// do not allow anonymous joins.
const params = new URLSearchParams(location.search);
if (params.get("room")) field("room").value = params.get("room");
// ?lang= and ?captions= preset what you speak and the captions you want.
if (params.get("lang")) field("language").value = params.get("lang");
if (params.get("captions") !== null) field("translateTo").value = params.get("captions");
const token = params.get("token") || undefined;

/**
 * What an error means to the person in the call, by its protocol code;
 * the code and the server's own words stay one click away for developers.
 */
const explanations = {
  unauthorized: "This room needs a valid invitation link. Ask the organiser for a new one.",
  room_full: "This room is full. Try again when someone leaves.",
  too_many_rooms: "The service is at capacity. Please try again in a few minutes.",
  identity_limit: "You are already in this room on other devices. Leave there first.",
  draining: "The service is restarting. Please rejoin in a moment.",
  version: "This page is out of date. Reload it.",
  rate_limited: "Slow down: too many messages at once.",
  unknown_participant: "That person has left the room.",
  too_many_tracks: "You cannot share more media in this call.",
  bad_sdp: "Your browser and the service could not agree on media. Try another browser.",
  resume_failed: "The connection was lost for too long. Please rejoin.",
  closed: "The connection to the call was lost.",
  internal: "The call connection failed. Please rejoin.",
};

function setStatus(text, isError = false, err = null) {
  statusEl.textContent = text;
  statusEl.classList.toggle("error", isError);
  if (err) {
    const details = document.createElement("details");
    const summary = document.createElement("summary");
    summary.textContent = "details";
    const code = document.createElement("code");
    code.textContent = ` ${err.code || "error"}: ${err.message}`;
    details.append(summary, code);
    statusEl.append(" ", details);
  }
}

/** Says what went wrong in words, with the code for developers. */
function showError(prefix, err) {
  const words = (err && explanations[err.code]) || "Something went wrong.";
  setStatus(prefix ? `${prefix} ${words}` : words, true, err);
}

function roomStatus() {
  const s = demo.session;
  if (!s || s.closed) return;
  const n = [...s.participants.values()].filter((p) => !p.agent).length + 1;
  const captioned = [...s.participants.values()].some((p) => p.agent);
  setStatus(`Room “${s.room}” · ${n} participant${n === 1 ? "" : "s"}${captioned ? " · live captions" : ""}`);
}

/** A tile per participant (and per shared screen): video, name, indicators. */
function tile(id, name, self = false, screen = false) {
  let t = demo.tiles.get(id);
  if (t) return t;
  const el = document.createElement("figure");
  el.className = "tile";
  el.dataset.participantId = id;
  el.dataset.name = name;
  if (self) el.dataset.self = "";
  if (screen) el.dataset.screen = "";
  const video = document.createElement("video");
  video.autoplay = true;
  video.playsInline = true;
  video.muted = self; // never play our own microphone back
  const avatar = document.createElement("div");
  avatar.className = "avatar";
  avatar.textContent = (name.trim()[0] || "?").toUpperCase();
  const caption = document.createElement("figcaption");
  const label = document.createElement("span");
  label.textContent = screen ? `${name}’s screen` : self ? `${name} (you)` : name;
  const mic = document.createElement("span");
  mic.className = "mic";
  mic.textContent = "muted";
  const reconnecting = document.createElement("span");
  reconnecting.className = "reconnecting";
  reconnecting.textContent = "reconnecting…";
  // The simulcast layer of the video this page receives.
  const quality = document.createElement("span");
  quality.className = "quality";
  quality.title = "video quality received";
  caption.append(label, mic, reconnecting, quality);
  // What this participant says, in the captions language, from the
  // translation agent.
  const subtitle = document.createElement("p");
  subtitle.className = "subtitle";
  subtitle.setAttribute("aria-live", "polite");
  el.append(video, avatar, caption, subtitle);
  if (screen) tilesEl.prepend(el);
  else tilesEl.append(el);
  t = { id, el, video, subtitle, quality, stream: new MediaStream(), receivers: [], subtitleTimer: 0, videoTrackId: "" };
  video.srcObject = t.stream;
  demo.tiles.set(id, t);
  return t;
}

const screenTile = (participantId) => `${participantId}/screen`;

const layerNames = ["low", "medium", "high"];

/** Shows the layer of a remote simulcast video the page receives. */
function showLayer(d) {
  for (const t of demo.tiles.values()) {
    if (t.videoTrackId !== d.trackId || !t.el.dataset.participantId.startsWith(d.participantId)) continue;
    t.el.dataset.layer = d.paused ? "paused" : layerNames[d.layer] || String(d.layer);
    t.quality.textContent = t.el.dataset.layer;
  }
}

/**
 * Asks for no more than a tile shows: the low layer for a small tile, the
 * medium one for a middling one, any for a large one.
 */
const tileSizes = new ResizeObserver((entries) => {
  for (const e of entries) {
    const t = demo.tiles.get(e.target.dataset.participantId);
    if (!t || !t.videoTrackId || !demo.session) continue;
    const w = e.contentRect.width * (window.devicePixelRatio || 1);
    const maxLayer = w < 320 ? 0 : w < 640 ? 1 : undefined;
    if (maxLayer === t.maxLayer) continue;
    t.maxLayer = maxLayer;
    const pid = e.target.dataset.participantId.replace(/\/screen$/, "");
    demo.session.setSubscription(pid, t.videoTrackId, { maxLayer });
  }
});

/**
 * Shows a caption under its speaker's tile: in the language this page
 * wants when the agent translated it, else as spoken; while the speaker is
 * still talking, the words so far as spoken (a partial caption, dimmed),
 * replaced by the final one. It fades after a while so old words do not
 * linger.
 */
function showCaption(c) {
  demo.captions.push(c);
  const s = demo.session;
  const t = demo.tiles.get(s && c.speaker === s.id ? "self" : c.speaker);
  if (!t || !s) return;
  const want = s.translateTo;
  if (!want) return;
  const text = !c.final ? c.text : (c.lang === want ? c.text : c.translations[want]) || (c.error ? "(could not caption that)" : "");
  if (!text) {
    // A final caption with no words takes back its partial ones.
    if (t.subtitleSegment === c.segment) t.subtitle.textContent = "";
    return;
  }
  t.subtitle.textContent = text;
  t.subtitle.lang = c.final && c.lang !== want ? want : c.lang;
  t.subtitle.classList.toggle("partial", !c.final);
  t.subtitleSegment = c.segment;
  clearTimeout(t.subtitleTimer);
  t.subtitleTimer = setTimeout(() => (t.subtitle.textContent = ""), 8000);
}

function removeTile(id) {
  const t = demo.tiles.get(id);
  if (!t) return;
  tileSizes.unobserve(t.el);
  t.el.remove();
  demo.tiles.delete(id);
}

function setFlag(el, name, on) {
  if (on) el.dataset[name] = "";
  else delete el.dataset[name];
}

/** Shows what a tile carries: avatar without live video, "muted" without sound. */
function render(id) {
  const t = demo.tiles.get(id);
  const s = demo.session;
  if (!t || t.el.dataset.screen !== undefined) return;
  if (t.el.dataset.self !== undefined) {
    const kinds = (k) => (s ? s.localTracks() : demo.local ? demo.local.getTracks() : []).filter((x) => x.kind === k && x !== demo.screenTrack);
    setFlag(t.el, "videoOff", !kinds("video").some((x) => x.enabled));
    setFlag(t.el, "audioMuted", kinds("audio").length > 0 && !kinds("audio").some((x) => x.enabled));
    return;
  }
  const info = (s && s.participants.get(id)) || { tracks: [] };
  const own = info.tracks.filter((x) => x.source !== "screen" && x.source !== "screen_audio");
  const live = (k) => t.stream.getTracks().some((x) => x.kind === k);
  const allMuted = (k) => {
    const ts = own.filter((x) => x.kind === k);
    return ts.length > 0 && ts.every((x) => x.muted);
  };
  setFlag(t.el, "videoOff", !live("video") || allMuted("video"));
  setFlag(t.el, "audioMuted", allMuted("audio"));
  setFlag(t.el, "reconnecting", info.status === "reconnecting");
}

function renderControls() {
  const s = demo.session;
  for (const [btn, kind, on, off] of [[micBtn, "audio", "Unmute", "Mute"], [camBtn, "video", "Start video", "Stop video"]]) {
    const has = !!s && (demo.local ? demo.local.getTracks() : []).some((t) => t.kind === kind);
    const muted = has && s.isMuted(kind);
    btn.disabled = !has;
    btn.textContent = muted ? on : off;
    btn.setAttribute("aria-pressed", String(muted));
  }
  shareBtn.disabled = !s || !navigator.mediaDevices || (!navigator.mediaDevices.getDisplayMedia && !demo.screen);
  shareBtn.textContent = demo.screen ? "Stop sharing" : "Share screen";
  shareBtn.setAttribute("aria-pressed", String(!!demo.screen));
}

/** Who speaks, as the server ranks them from the audio it forwards. */
function renderSpeakers(speakers) {
  const s = demo.session;
  const loud = new Set(speakers.map((x) => (s && x.participantId === s.id ? "self" : x.participantId)));
  for (const t of demo.tiles.values()) setFlag(t.el, "speaking", loud.has(t.id));
}

/** Shares a screen (or, in tests, a canvas's stream) with the room. */
async function shareScreen(stream) {
  const s = demo.session;
  if (!s || demo.screen) return;
  demo.screen = stream;
  const [track] = stream.getVideoTracks();
  demo.screenTrack = track;
  track.addEventListener("ended", () => stopScreen()); // the browser's own "Stop sharing"
  const own = tile("self/screen", "You", true, true);
  own.stream.addTrack(track);
  await s.publish(stream, { source: "screen" });
  renderControls();
}

async function stopScreen() {
  const s = demo.session;
  const stream = demo.screen;
  if (!stream) return;
  demo.screen = null;
  demo.screenTrack = null;
  removeTile("self/screen");
  for (const t of stream.getTracks()) {
    t.stop();
    if (s && !s.closed) await s.unpublish(t).catch(() => {});
  }
  renderControls();
}

function addMessage(from, text, ts) {
  const li = document.createElement("li");
  const who = document.createElement("span");
  who.className = "from";
  who.textContent = from;
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  li.append(who, body);
  if (ts) li.title = new Date(ts).toLocaleTimeString();
  messagesEl.append(li);
  messagesEl.scrollTop = messagesEl.scrollHeight;
}

function leftRoom(message, isError = false, err = null) {
  if (demo.local) for (const track of demo.local.getTracks()) track.stop();
  if (demo.screen) for (const track of demo.screen.getTracks()) track.stop();
  demo.local = null;
  demo.screen = null;
  demo.screenTrack = null;
  demo.session = null;
  for (const id of [...demo.tiles.keys()]) removeTile(id);
  messagesEl.replaceChildren();
  controls.hidden = true;
  chatEl.hidden = true;
  form.hidden = false;
  form.querySelector("button").disabled = false;
  if (err) showError(message, err);
  else setStatus(message, isError);
}

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  const roomName = field("room").value.trim();
  const name = field("name").value.trim() || "Guest";
  const want = { audio: field("mic").checked, video: field("camera").checked };
  form.querySelector("button").disabled = true;
  setStatus("Joining…");
  try {
    if (want.audio || want.video) {
      demo.local = await navigator.mediaDevices.getUserMedia({
        audio: want.audio,
        video: want.video && { width: { ideal: 640 }, height: { ideal: 360 } },
      });
    }
    const self = tile("self", name, true);
    if (demo.local) for (const track of demo.local.getTracks()) self.stream.addTrack(track);
    render("self");
    const session = await join(defaultURL(), {
      room: roomName,
      name,
      token,
      language: field("language").value,
      translateTo: field("translateTo").value,
      on: {
        participantjoined: ({ detail: { participant: p } }) => {
          demo.names.set(p.id, p.name || "Guest");
          if (p.agent) return roomStatus(); // the translation agent has no face: its captions show under others' tiles
          tile(p.id, p.name || "Guest");
          render(p.id);
          roomStatus();
        },
        participantleft: ({ detail: { participantId } }) => {
          removeTile(participantId);
          removeTile(screenTile(participantId));
          roomStatus();
        },
        participantstatus: ({ detail: d }) => render(d.participantId),
        trackadded: ({ detail: d }) => {
          if (d.source === "translation") {
            // The agent's voice for a speaker plays from that speaker's
            // tile: the server no longer sends their own voice here.
            const t = demo.tiles.get(d.translationOf);
            if (!t) return;
            t.stream.addTrack(d.track);
            t.receivers.push(d.receiver);
            demo.dubs.set(d.translationOf, d.receiver);
            t.el.dataset.dubbed = d.lang;
            t.video.srcObject = t.stream;
            t.video.play().catch(() => {});
            return render(d.translationOf);
          }
          const isScreen = d.source === "screen" || d.source === "screen_audio";
          const t = isScreen ? tile(screenTile(d.participantId), demo.names.get(d.participantId) || "Guest", false, true) : demo.tiles.get(d.participantId);
          if (!t) return;
          t.stream.addTrack(d.track);
          if (d.kind === "audio") t.receivers.push(d.receiver);
          const info = demo.session.participants.get(d.participantId);
          const ti = info && info.tracks.find((x) => x.id === d.trackId);
          if (d.kind === "video" && ti && ti.layers > 1) {
            t.videoTrackId = d.trackId;
            t.maxLayer = null;
            tileSizes.observe(t.el);
          }
          t.video.srcObject = t.stream; // pick up the new track
          t.video.play().catch(() => {}); // autoplay may wait for a click
          render(d.participantId);
        },
        trackremoved: ({ detail: d }) => {
          for (const [id, t] of demo.tiles) {
            if (!t.stream.getTracks().includes(d.track)) continue;
            if (id !== d.participantId && !id.endsWith("/screen")) {
              delete t.el.dataset.dubbed; // a translation ended
              demo.dubs.delete(id);
            }
            t.stream.removeTrack(d.track);
            t.receivers = t.receivers.filter((r) => r.track !== d.track);
            if (t.videoTrackId === d.trackId) {
              t.videoTrackId = "";
              delete t.el.dataset.layer;
              tileSizes.unobserve(t.el);
            }
            if (id === screenTile(d.participantId) && t.stream.getTracks().length === 0) removeTile(id);
          }
          render(d.participantId);
        },
        trackpublished: ({ detail: d }) => render(d.participantId),
        trackunpublished: ({ detail: d }) => render(d.participantId),
        mute: ({ detail: d }) => render(d.local ? "self" : d.participantId),
        activespeakers: ({ detail: d }) => renderSpeakers(d.speakers),
        layer: ({ detail: d }) => showLayer(d),
        caption: ({ detail: c }) => showCaption(c),
        data: ({ detail: d }) => {
          if (d.topic === "chat" && d.payload && typeof d.payload.text === "string") {
            addMessage(demo.names.get(d.from) || "Guest", d.payload.text, d.ts);
          }
        },
        reconnecting: () => setStatus("Connection lost. Reconnecting…", true),
        reconnected: () => roomStatus(),
        error: ({ detail: { error } }) => showError("", error),
        draining: ({ detail: { deadlineMs } }) =>
          setStatus(`The server is shutting down; this call ends within ${Math.ceil(deadlineMs / 1000)} s.`, true),
        close: ({ detail: d }) => {
          if (demo.session) leftRoom(d.error ? "Disconnected." : "The call ended.", !!d.error, d.error);
        },
      },
    });
    demo.session = session;
    self.el.dataset.participantId = session.id;
    form.hidden = true;
    controls.hidden = false;
    chatEl.hidden = false;
    captionsSelect.value = session.translateTo;
    roomStatus();
    if (demo.local) await session.publish(demo.local);
    renderControls();
  } catch (err) {
    const s = demo.session;
    leftRoom("Could not join.", true, err);
    if (s) s.leave();
  }
});

micBtn.addEventListener("click", () => {
  demo.session.mute(demo.local.getAudioTracks()[0], !demo.session.isMuted(demo.local.getAudioTracks()[0]));
  render("self");
  renderControls();
});

camBtn.addEventListener("click", () => {
  demo.session.mute(demo.local.getVideoTracks()[0], !demo.session.isMuted(demo.local.getVideoTracks()[0]));
  render("self");
  renderControls();
});

shareBtn.addEventListener("click", async () => {
  if (demo.screen) return stopScreen();
  try {
    await shareScreen(await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false }));
  } catch (err) {
    if (err && err.name !== "NotAllowedError") showError("Could not share the screen.", { code: "client", message: String(err.message || err) });
  }
});

captionsSelect.addEventListener("change", () => {
  const s = demo.session;
  if (s) s.setLanguages(s.language, captionsSelect.value);
});

sayForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const input = sayForm.elements.namedItem("text");
  const text = input.value.trim();
  if (!text || !demo.session) return;
  try {
    demo.session.sendData("chat", { text });
    addMessage("You", text, Date.now());
    input.value = "";
  } catch (err) {
    showError("", err);
  }
});

$("#leave").addEventListener("click", async () => {
  const s = demo.session;
  demo.session = null; // the close event that follows is expected
  if (s) await s.leave();
  leftRoom("You left the room.");
});
