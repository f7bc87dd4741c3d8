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
const field = (name) => form.elements.namedItem(name);
const camBtn = $("#mute-cam");

/**
 * The page's state, also on window.demo for the console (and the browser
 * test, which reads the peer connections' stats from session).
 */
const demo = { session: null, local: null, tiles: new Map() };
window.demo = demo;

// ?room= presets the room; ?token= carries a join token for servers that
// do not allow anonymous joins.
const params = new URLSearchParams(location.search);
if (params.get("room")) field("room").value = params.get("room");
const token = params.get("token") || undefined;

function setStatus(text, isError = false) {
  statusEl.textContent = text;
  statusEl.classList.toggle("error", isError);
}

function roomStatus() {
  const s = demo.session;
  if (!s || s.closed) return;
  const n = s.participants.size + 1;
  setStatus(`Room “${s.room}” · ${n} participant${n === 1 ? "" : "s"}`);
}

/** A tile per participant: video, name, mute and speaking indicators. */
function tile(id, name, self = false) {
  let t = demo.tiles.get(id);
  if (t) return t;
  const el = document.createElement("figure");
  el.className = "tile";
  el.dataset.participantId = id;
  el.dataset.name = name;
  if (self) el.dataset.self = "";
  const video = document.createElement("video");
  video.autoplay = true;
  video.playsInline = true;
  video.muted = self; // never play our own microphone back
  const avatar = document.createElement("div");
  avatar.className = "avatar";
  avatar.textContent = (name.trim()[0] || "?").toUpperCase();
  const caption = document.createElement("figcaption");
  const label = document.createElement("span");
  label.textContent = self ? `${name} (you)` : name;
  const mic = document.createElement("span");
  mic.className = "mic";
  mic.textContent = "muted";
  caption.append(label, mic);
  el.append(video, avatar, caption);
  tilesEl.append(el);
  t = { id, el, video, stream: new MediaStream(), receivers: [] };
  video.srcObject = t.stream;
  demo.tiles.set(id, t);
  return t;
}

function removeTile(id) {
  const t = demo.tiles.get(id);
  if (!t) return;
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
  if (!t) return;
  if (t.el.dataset.self !== undefined) {
    const kinds = (k) => (s ? s.localTracks() : demo.local ? demo.local.getTracks() : []).filter((x) => x.kind === k);
    setFlag(t.el, "videoOff", !kinds("video").some((x) => x.enabled));
    setFlag(t.el, "audioMuted", kinds("audio").length > 0 && !kinds("audio").some((x) => x.enabled));
    return;
  }
  const info = (s && s.participants.get(id)) || { tracks: [] };
  const live = (k) => t.stream.getTracks().some((x) => x.kind === k);
  const allMuted = (k) => {
    const ts = info.tracks.filter((x) => x.kind === k);
    return ts.length > 0 && ts.every((x) => x.muted);
  };
  setFlag(t.el, "videoOff", !live("video") || allMuted("video"));
  setFlag(t.el, "audioMuted", allMuted("audio"));
}

function renderControls() {
  const s = demo.session;
  for (const [btn, kind, on, off] of [[micBtn, "audio", "Unmute", "Mute"], [camBtn, "video", "Start video", "Stop video"]]) {
    const has = !!s && s.localTracks().some((t) => t.kind === kind);
    const muted = has && s.isMuted(kind);
    btn.disabled = !has;
    btn.textContent = muted ? on : off;
    btn.setAttribute("aria-pressed", String(muted));
  }
}

// Who speaks: the audio-level header extension the SFU forwards, read
// from each receiver's synchronization sources (and the local source's stats).
setInterval(async () => {
  const s = demo.session;
  if (!s || s.closed) return;
  for (const t of demo.tiles.values()) {
    let level = 0;
    if (t.el.dataset.self !== undefined) {
      if (!s.isMuted("audio")) {
        const stats = await s.publisher.getStats().catch(() => new Map()); // closed meanwhile
        stats.forEach((r) => {
          if (r.type === "media-source" && r.kind === "audio") level = Math.max(level, r.audioLevel || 0);
        });
      }
    } else {
      for (const r of t.receivers) for (const src of r.getSynchronizationSources()) level = Math.max(level, src.audioLevel || 0);
    }
    // Held for a second after the last loud sample: levels arrive per
    // packet, and a 300 ms poll of a beep or a syllable would flicker.
    const now = Date.now();
    if (level > 0.01) t.lastLoud = now; // −40 dBov: above room noise, below speech
    setFlag(t.el, "speaking", now - (t.lastLoud || 0) < 1000);
  }
}, 300);

function leftRoom(message, isError = false) {
  if (demo.local) for (const track of demo.local.getTracks()) track.stop();
  demo.local = null;
  demo.session = null;
  for (const id of [...demo.tiles.keys()]) removeTile(id);
  controls.hidden = true;
  form.hidden = false;
  form.querySelector("button").disabled = false;
  setStatus(message, isError);
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
      on: {
        participantjoined: ({ detail: { participant: p } }) => {
          tile(p.id, p.name || "Guest");
          render(p.id);
          roomStatus();
        },
        participantleft: ({ detail: { participantId } }) => {
          removeTile(participantId);
          roomStatus();
        },
        trackadded: ({ detail: d }) => {
          const t = demo.tiles.get(d.participantId);
          if (!t) return;
          t.stream.addTrack(d.track);
          if (d.kind === "audio") t.receivers.push(d.receiver);
          t.video.srcObject = t.stream; // pick up the new track
          t.video.play().catch(() => {}); // autoplay may wait for a click
          render(d.participantId);
        },
        trackremoved: ({ detail: d }) => {
          const t = demo.tiles.get(d.participantId);
          if (!t) return;
          t.stream.removeTrack(d.track);
          t.receivers = t.receivers.filter((r) => r.track !== d.track);
          render(d.participantId);
        },
        trackpublished: ({ detail: d }) => render(d.participantId),
        trackunpublished: ({ detail: d }) => render(d.participantId),
        mute: ({ detail: d }) => render(d.local ? "self" : d.participantId),
        error: ({ detail: { error } }) => setStatus(`Error: ${error.message}`, true),
        draining: ({ detail: { deadlineMs } }) =>
          setStatus(`The server is shutting down; this call ends within ${Math.ceil(deadlineMs / 1000)} s.`, true),
        close: ({ detail: d }) => {
          if (demo.session) leftRoom(`Disconnected (${d.code}${d.reason ? `: ${d.reason}` : ""}).`, !!d.error);
        },
      },
    });
    demo.session = session;
    self.el.dataset.participantId = session.id;
    form.hidden = true;
    controls.hidden = false;
    roomStatus();
    if (demo.local) await session.publish(demo.local);
    renderControls();
  } catch (err) {
    const s = demo.session;
    leftRoom(`Could not join: ${err.message}`, true);
    if (s) s.leave();
  }
});

micBtn.addEventListener("click", () => {
  demo.session.mute("audio", !demo.session.isMuted("audio"));
  renderControls();
});

camBtn.addEventListener("click", () => {
  demo.session.mute("video", !demo.session.isMuted("video"));
  renderControls();
});

$("#leave").addEventListener("click", async () => {
  const s = demo.session;
  demo.session = null; // the close event that follows is expected
  if (s) await s.leave();
  leftRoom("You left the room.");
});
