// sfu.js: browser client for the SFU's signalling protocol, version 1
// (sfu/PROTOCOL.md). A plain ES module with no dependencies; the SFU serves
// it at /client/sfu.js, with its TypeScript declarations at
// /client/sfu.d.ts. The SFU sends `Access-Control-Allow-Origin: *`, so a
// page on another origin may import it from the SFU too; a frontend that
// bundles its code can ship a copy instead.
//
//   import { join } from "https://sfu.example.org:8443/client/sfu.js";
//   const session = await join("wss://sfu.example.org:8443/ws", {
//     room: "standup", name: "Ana", token,
//     on: {
//       trackadded: (e) => show(e.detail),
//       participantleft: (e) => hide(e.detail.participantId),
//       data: (e) => chat(e.detail),
//       reconnecting: () => banner("Reconnecting…"),
//       reconnected: () => banner(""),
//       error: (e) => console.warn(e.detail.error.code, e.detail.error.message),
//       close: (e) => ended(e.detail.error),
//     },
//   });
//   await session.publish(await navigator.mediaDevices.getUserMedia({ audio: true, video: true }));
//   session.mute("audio", true);
//   session.sendData("chat", { text: "hello" });
//   await session.leave();
//
// Each session has two RTCPeerConnections: `publisher` (the client offers,
// carrying its own tracks) and `subscriber` (the server offers, carrying
// everyone else's). Offers on one connection always come from the same
// side, so offers never cross (no glare) and neither side needs the
// polite/impolite roles of "perfect negotiation".
//
// The session survives the network: a dropped WebSocket is resumed on a
// new one within the server's window (`reconnecting`, `reconnected`), and
// a connection whose ICE drops (a new address, a network change) is
// restarted, media resuming without a new join.

/** The protocol version this client speaks. */
export const PROTOCOL_VERSION = 1;

// How long the server may stay silent (it answers a ping at once) before
// the signalling connection is taken as gone.
const SILENCE_MS = 8000;

/**
 * An error the server reported (`code` is one of PROTOCOL.md's codes) or a
 * client-side failure (`code` "client" or "closed").
 */
export class SFUError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {string} [ref] type of the message that caused it
   */
  constructor(code, message, ref) {
    super(`${code}: ${message}`);
    this.name = "SFUError";
    this.code = code;
    this.ref = ref;
  }
}

/**
 * The signalling URL of the SFU that served this module: the module lives at
 * `<prefix>/client/sfu.js` and the WebSocket at `<prefix>/ws`, so this holds
 * behind a proxy that mounts the SFU under a path (Traefik's `/sfu`) too.
 * @param {string} [moduleURL] where sfu.js was loaded from
 * @returns {string}
 */
export function defaultURL(moduleURL = import.meta.url) {
  const u = new URL("../ws", moduleURL);
  u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
  return u.href;
}

/**
 * The encodings a camera track is published with: null for one layer.
 * @param {boolean|RTCRtpEncodingParameters[]|undefined} option
 * @returns {RTCRtpEncodingParameters[]|null}
 */
function simulcastEncodings(option) {
  if (option === false) return null;
  if (Array.isArray(option)) return option.length > 1 ? option : null;
  return SIMULCAST_LAYERS;
}

/**
 * @typedef {object} TrackInfo
 * @property {string} id     the publisher's track id
 * @property {"audio"|"video"} kind
 * @property {string} [codec]
 * @property {boolean} [muted]
 * @property {"camera"|"microphone"|"screen"|"screen_audio"|"translation"} [source]
 * @property {string} [translationOf] a translation's speaker (participant id)
 * @property {string} [lang]          a translation's language
 * @property {number} [layers]  simulcast layers the publisher sends (absent: one)
 * @property {number} [layer]   the layer this client receives (0 the lowest), or -1 while
 *   paused; from `layer` events, on simulcast tracks only
 *
 * @typedef {object} Participant
 * @property {string} id
 * @property {string} [name]
 * @property {TrackInfo[]} tracks
 * @property {"connected"|"reconnecting"} status
 * @property {string} language     what it speaks ("" if it did not say)
 * @property {string} translateTo  what it wants others in ("" for none)
 * @property {boolean} agent       a service in the room (the translation agent), not a person
 *
 * @typedef {object} Caption
 * @property {string} from        the agent that sent it
 * @property {number} ts          server time, ms since the epoch
 * @property {string} speaker     whose words
 * @property {number} segment     that speaker's utterance number, from 1
 * @property {boolean} final     false: the words so far while the speaker talks (as
 *   spoken, no translations), replaced by later captions of the same segment
 * @property {string} lang        the language spoken
 * @property {string} text        the words as spoken
 * @property {Object<string, string>} translations  by language
 * @property {string} error       why words are missing ("" when none are)
 *
 * @typedef {object} JoinOptions
 * @property {string} room
 * @property {string} [name]   display name (the token's name claim wins)
 * @property {string} [token]  HS256 JWT; omit only on servers that allow anonymous joins
 * @property {Object<string, (e: CustomEvent) => void>} [on]
 *   listeners added before the join is sent, so none of the first events is missed
 * @property {RTCConfiguration} [rtcConfig] merged over {iceServers} from the join reply
 * @property {string} [language]    language tag this participant speaks, e.g. "en"
 * @property {string} [translateTo] language tag it wants captions in, e.g. "es"
 * @property {boolean|RTCRtpEncodingParameters[]} [simulcast] how camera video is published:
 *   true (the default) as three layers, SIMULCAST_LAYERS; false as one; or your own encodings,
 *   lowest first, each with a rid
 */

/**
 * The simulcast layers camera video is published as, lowest first: each
 * subscriber receives the one its link carries and its tile needs.
 * @type {RTCRtpEncodingParameters[]}
 */
export const SIMULCAST_LAYERS = Object.freeze([
  Object.freeze({ rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150_000 }),
  Object.freeze({ rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500_000 }),
  Object.freeze({ rid: "f", scaleResolutionDownBy: 1, maxBitrate: 1_500_000 }),
]);

/**
 * Opens the signalling socket and joins a room. Resolves once the server
 * accepted the join; rejects with an SFUError (e.g. code "unauthorized",
 * "room_full") otherwise.
 *
 * Events (CustomEvent, data in `detail`):
 * - `participantjoined` {participant}: also fired, before join resolves, for
 *   everyone already in the room
 * - `participantleft` {participantId}
 * - `trackpublished` {participantId, track}, `trackunpublished` {participantId, trackId}:
 *   the server's notices; the media follows as `trackadded` / `trackremoved`
 * - `trackadded` {participantId, trackId, kind, source, track, receiver, muted,
 *   translationOf, lang}: a "translation" track is the agent's voice for
 *   another participant (translationOf) in the language you want (lang); the
 *   server then stops sending you that participant's own voice
 * - `trackremoved` {participantId, trackId, kind, track}
 * - `mute` {participantId, trackId, kind, muted, local}
 * - `participantstatus` {participantId, status}: "reconnecting" while its
 *   signalling is gone (its media may go on), "connected" when back
 * - `data` {from, ts, topic, payload, to}: an app message (chat, reactions)
 * - `caption` {Caption}: what someone said, with its translations (from
 *   the translation agent; `captions` data messages come only as this)
 * - `languages` {participantId, language, translateTo}: someone changed theirs
 * - `layer` {participantId, trackId, layer, target, paused}: which simulcast
 *   layer of a remote track this client now receives (0 the lowest), which one
 *   the server aims for, and whether it receives none (asked so, or too little
 *   bandwidth); see setSubscription
 * - `activespeakers` {speakers: [{participantId, level}]}: the loudest
 *   first, as the server measures them; sent when the list changes
 * - `connectionstatechange` {target: "publisher"|"subscriber", state}
 * - `reconnecting` {}: the signalling WebSocket dropped; the client
 *   resumes the session on a new one, media going on meanwhile
 * - `reconnected` {}: resumed; participants and tracks are brought up to date
 * - `error` {error: SFUError}
 * - `draining` {deadlineMs}: the server shuts down and closes the session soon
 * - `close` {code, reason, error}: the session ended (leave, server, or a
 *   network loss longer than the resume window)
 *
 * @param {string} url ws:// or wss:// signalling URL; empty for defaultURL()
 * @param {JoinOptions} opts
 * @returns {Promise<Session>}
 */
export async function join(url, opts) {
  const session = new Session(url || defaultURL(), opts);
  await session._joined;
  return session;
}

/** One participant's signalling session and its two peer connections. */
export class Session extends EventTarget {
  /** @param {string} url @param {JoinOptions} opts */
  constructor(url, opts) {
    super();
    /** This participant's id (the stream id of its tracks at the others). */
    this.id = "";
    this.room = opts.room;
    /** @type {RTCIceServer[]} */
    this.iceServers = [];
    /** Everyone else in the room. @type {Map<string, Participant>} */
    this.participants = new Map();
    /** @type {RTCPeerConnection|null} */
    this.publisher = null;
    /** @type {RTCPeerConnection|null} */
    this.subscriber = null;
    this.closed = false;

    this._opts = opts;
    this._queue = Promise.resolve(); // incoming messages, handled one at a time
    this._pubChain = Promise.resolve(); // publisher negotiations, one at a time
    this._answer = null; // {resolve, reject} of the publisher offer in flight
    this._pending = { publisher: [], subscriber: [] }; // candidates before a remote description
    this._subTracks = new Map(); // subscriber mid → {participantId, trackId, kind, track}
    this._local = new Map(); // local track id → {track, sender, transceiver, muted, source}
    this._muteRetries = 0;
    this._url = url;
    this._resume = null; // {token, windowMs} from joined / resumed
    this._resuming = null; // {deadline, wait} while a resume is attempted
    this._leaving = false;
    this._draining = false;
    this._outbox = []; // messages sent while resuming
    this._iceTimers = {};
    /** Whether the signalling connection is being resumed. */
    this.reconnecting = false;
    /** The active speakers, loudest first. @type {{participantId: string, level: number}[]} */
    this.activeSpeakers = [];

    for (const [type, fn] of Object.entries(opts.on || {})) this.addEventListener(type, fn);
    this._joined = new Promise((resolve, reject) => {
      this._join = { resolve, reject };
    });
    // Until joined, a failure rejects join() instead of firing events.
    this._joined.then(() => (this._join = null), () => (this._join = null));

    /** The language this participant speaks and the one it wants others in. */
    this.language = opts.language || "";
    this.translateTo = opts.translateTo || "";
    this._open({
      type: "join", v: PROTOCOL_VERSION, room: opts.room, name: opts.name || undefined, token: opts.token || undefined,
      language: this.language || undefined, translateTo: this.translateTo || undefined,
    });
    // Closing the page is leaving, not a network loss to wait out.
    this._onPageHide = () => {
      if (this.id && !this.closed) {
        this._leaving = true;
        this._send({ type: "leave" });
      }
    };
    this._onOnline = () => this._restartICE("network change");
    // A WebSocket whose network went away (a new address, a dead link)
    // may not close for minutes: a server silent for longer than
    // SILENCE_MS after a ping is taken as gone, and the session resumed.
    this._lastHeard = Date.now();
    this._heartbeat = setInterval(() => {
      if (this.closed || this.reconnecting || !this.id || this._ws.readyState !== WebSocket.OPEN) return;
      const quiet = Date.now() - this._lastHeard;
      if (quiet > SILENCE_MS) {
        const dead = this._ws;
        this._ws = { readyState: WebSocket.CLOSED, close() {}, send() {} }; // its late events are ignored
        try { dead.close(4001, "no pong"); } catch (_) { /* closing a dead socket */ }
        this._onSocketClose(4001, "no answer from the server");
      } else if (quiet > SILENCE_MS / 3) {
        this._send({ type: "ping" });
      }
    }, SILENCE_MS / 4);
    if (typeof window !== "undefined") {
      window.addEventListener("pagehide", this._onPageHide);
      window.addEventListener("online", this._onOnline);
    }
  }

  /** Opens a signalling WebSocket whose first message is first. */
  _open(first) {
    const ws = new WebSocket(this._url);
    this._ws = ws;
    ws.onopen = () => ws.send(JSON.stringify(first));
    ws.onmessage = (e) => {
      if (ws !== this._ws) return;
      this._lastHeard = Date.now();
      this._queue = this._queue
        .then(() => this._handle(JSON.parse(e.data)))
        .catch((err) => this._fail(new SFUError("client", String(err && err.message ? err.message : err))));
    };
    ws.onclose = (e) => {
      if (ws === this._ws) this._onSocketClose(e.code, e.reason);
    };
  }

  /**
   * Publishes tracks (a MediaStream's or a list) on the publisher
   * connection and resolves once the server answered. `source` tells the
   * others what they carry: "screen" for a shared screen (its audio
   * becomes "screen_audio"); by default camera and microphone. Camera
   * video goes as simulcast layers unless `simulcast` (here, else the join
   * option) says otherwise.
   * @param {MediaStream|MediaStreamTrack[]} media
   * @param {{source?: "camera"|"microphone"|"screen", simulcast?: boolean|RTCRtpEncodingParameters[]}} [options]
   */
  async publish(media, options = {}) {
    const tracks = media instanceof MediaStream ? media.getTracks() : media;
    const stream = media instanceof MediaStream ? media : new MediaStream(tracks);
    for (const track of tracks) {
      if (this._local.has(track.id)) continue;
      const init = { direction: "sendonly", streams: [stream] };
      const encodings = track.kind === "video" && (options.source || "camera") === "camera" ? simulcastEncodings(options.simulcast ?? this._opts.simulcast) : null;
      if (encodings) init.sendEncodings = encodings.map((e) => ({ ...e }));
      const transceiver = this.publisher.addTransceiver(track, init);
      let source = options.source;
      if (source === "screen" && track.kind === "audio") source = "screen_audio";
      this._local.set(track.id, { track, sender: transceiver.sender, transceiver, muted: !track.enabled, source });
    }
    await this._negotiate();
    // A track published disabled starts muted for the others too.
    for (const track of tracks) if (!track.enabled) this._sendMute(this._local.get(track.id), true);
  }

  /**
   * Stops sending a published track and renegotiates. The track itself is
   * the caller's to stop.
   * @param {MediaStreamTrack} track
   */
  async unpublish(track) {
    const local = this._local.get(track.id);
    if (!local) return;
    this._local.delete(track.id);
    this.publisher.removeTrack(local.sender);
    await this._negotiate();
  }

  /**
   * Sends another track in a published one's place (another camera or
   * microphone) without renegotiating; its mute state carries over. The
   * old track is the caller's to stop.
   * @param {MediaStreamTrack} oldTrack
   * @param {MediaStreamTrack} newTrack
   */
  async replaceTrack(oldTrack, newTrack) {
    const local = this._local.get(oldTrack.id);
    if (!local) throw new SFUError("client", `track ${oldTrack.id} is not published`);
    if (newTrack.kind !== oldTrack.kind) throw new SFUError("client", `cannot replace ${oldTrack.kind} with ${newTrack.kind}`);
    newTrack.enabled = !local.muted;
    await local.sender.replaceTrack(newTrack);
    this._local.delete(oldTrack.id);
    local.track = newTrack;
    this._local.set(newTrack.id, local);
  }

  /**
   * Sends an app message to the room, or to the participants `to` names:
   * reliable and ordered, at most 8 KiB of JSON, about 10 a second. The
   * others get a `data` event.
   * @param {string} topic lower-case name, e.g. "chat"
   * @param {any} payload any JSON value but null
   * @param {string[]} [to] participant ids
   */
  sendData(topic, payload, to) {
    if (this.closed) throw new SFUError("closed", "session closed");
    this._send({ type: "data", topic, payload, to: to && to.length ? to : undefined });
  }

  /**
   * Changes the language this participant speaks and the one it wants
   * captions in ("" for none); the others get a `languages` event.
   * @param {string} language
   * @param {string} translateTo
   */
  setLanguages(language, translateTo) {
    if (this.closed) throw new SFUError("closed", "session closed");
    this.language = language || "";
    this.translateTo = translateTo || "";
    this._send({ type: "languages", language: this.language, translateTo: this.translateTo });
  }

  /**
   * Says what this client wants of a remote simulcast track: at most layer
   * `maxLayer` (0 the lowest; omitted: any its link carries), e.g. the
   * lowest for a small tile, or nothing while `paused` (a track not on
   * screen). The server answers with a `layer` event.
   * @param {string} participantId
   * @param {string} trackId
   * @param {{maxLayer?: number, paused?: boolean}} [want]
   */
  setSubscription(participantId, trackId, want = {}) {
    if (this.closed) throw new SFUError("closed", "session closed");
    this._send({ type: "subscription", participantId, trackId, maxLayer: want.maxLayer ?? undefined, paused: want.paused || undefined });
  }

  // The server says which simulcast layers of a published track anyone
  // receives: the browser stops encoding the others until asked again.
  async _setActiveLayers(mid, active) {
    const local = [...this._local.values()].find((l) => l.transceiver.mid === mid);
    if (!local) return;
    const params = local.sender.getParameters();
    if (!params.encodings || params.encodings.length < 2) return;
    let changed = false;
    params.encodings.forEach((e, i) => {
      const want = active[i] !== false;
      if (e.active !== want) (e.active = want), (changed = true);
    });
    if (changed) await local.sender.setParameters(params).catch(() => {}); // an old browser keeps sending them all
  }

  /** Local tracks published so far. @returns {MediaStreamTrack[]} */
  localTracks() {
    return [...this._local.values()].map((l) => l.track);
  }

  /**
   * Mutes or unmutes published tracks: a muted track sends silence or black
   * frames (track.enabled = false) and the others get a `mute` event.
   * @param {MediaStreamTrack|"audio"|"video"} what a track, or every local track of a kind
   * @param {boolean} muted
   */
  mute(what, muted) {
    for (const local of this._local.values()) {
      if (what !== local.track && what !== local.track.kind) continue;
      local.track.enabled = !muted;
      local.muted = muted;
      this._sendMute(local, muted);
      this._emit("mute", { participantId: this.id, trackId: local.track.id, kind: local.track.kind, muted, local: true });
    }
  }

  /**
   * Whether a local track, or every local track of a kind, is muted.
   * @param {MediaStreamTrack|"audio"|"video"} what
   */
  isMuted(what) {
    const list = [...this._local.values()].filter((l) => what === l.track || what === l.track.kind);
    return list.length > 0 && list.every((l) => l.muted);
  }

  /**
   * Leaves the room: tells the server, closes both peer connections and
   * the socket. Local tracks are the caller's to stop.
   */
  async leave() {
    if (this.closed) return;
    this._leaving = true;
    if (this.reconnecting || this._ws.readyState !== WebSocket.OPEN) {
      this._end(1000, "left");
      return;
    }
    this._send({ type: "leave", room: this.room });
    const gone = new Promise((resolve) => this.addEventListener("close", resolve, { once: true }));
    // The server closes the socket after a leave; don't wait for ever.
    const timer = setTimeout(() => this._ws.close(1000, "left"), 2000);
    await gone;
    clearTimeout(timer);
  }

  // ---- internals ----

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _send(msg) {
    // While resuming, what the app sends waits for the new connection.
    if (this.reconnecting) {
      if (this._outbox.length < 100) this._outbox.push(msg);
      return;
    }
    if (this._ws.readyState === WebSocket.OPEN) this._ws.send(JSON.stringify(msg));
  }

  // The server knows a published track by its transceiver's mid, which
  // both sides share; a MediaStreamTrack's id is not its SDP msid in every
  // browser (Firefox).
  _sendMute(local, muted) {
    if (local) this._send({ type: "mute", mid: local.transceiver.mid, muted });
  }

  _fail(error) {
    if (this._join) this._join.reject(error);
    else this._emit("error", { error });
  }

  async _handle(msg) {
    switch (msg.type) {
      case "joined":
        return this._onJoined(msg);
      case "answer": {
        const pending = this._answer;
        if (msg.target !== "publisher" || !pending) return;
        this._answer = null;
        try {
          await this.publisher.setRemoteDescription({ type: "answer", sdp: msg.sdp });
          await this._flush("publisher");
          pending.resolve();
        } catch (err) {
          pending.reject(err); // publish() reports it
        }
        return;
      }
      case "offer":
        if (msg.target === "subscriber") await this._onSubscriberOffer(msg.sdp);
        return;
      case "candidate":
        return this._onCandidate(msg);
      case "participant_joined": {
        const p = normParticipant(msg.participant);
        this.participants.set(p.id, p);
        return this._emit("participantjoined", { participant: p });
      }
      case "participant_left":
        this.participants.delete(msg.id);
        return this._emit("participantleft", { participantId: msg.id });
      case "track_published": {
        const p = this.participants.get(msg.participantId);
        if (p) p.tracks = p.tracks.filter((t) => t.id !== msg.track.id).concat([msg.track]);
        return this._emit("trackpublished", { participantId: msg.participantId, track: msg.track });
      }
      case "track_unpublished": {
        const p = this.participants.get(msg.participantId);
        if (p) p.tracks = p.tracks.filter((t) => t.id !== msg.trackId);
        return this._emit("trackunpublished", { participantId: msg.participantId, trackId: msg.trackId });
      }
      case "mute": {
        const t = this._trackInfo(msg.participantId, msg.trackId);
        if (t) t.muted = msg.muted;
        return this._emit("mute", {
          participantId: msg.participantId, trackId: msg.trackId, kind: t ? t.kind : undefined, muted: msg.muted, local: false,
        });
      }
      case "layer": {
        const t = this._trackInfo(msg.participantId, msg.trackId);
        if (t) t.layer = msg.paused ? -1 : msg.layer;
        return this._emit("layer", {
          participantId: msg.participantId, trackId: msg.trackId, layer: msg.layer, target: msg.target, paused: !!msg.paused,
        });
      }
      case "active_layers":
        return this._setActiveLayers(msg.mid, msg.active || []);
      case "resumed":
        return this._onResumed(msg);
      case "participant_status": {
        const p = this.participants.get(msg.id);
        if (p) p.status = msg.status;
        return this._emit("participantstatus", { participantId: msg.id, status: msg.status });
      }
      case "languages": {
        const p = this.participants.get(msg.participantId);
        if (p) Object.assign(p, { language: msg.language || "", translateTo: msg.translateTo || "" });
        return this._emit("languages", { participantId: msg.participantId, language: msg.language || "", translateTo: msg.translateTo || "" });
      }
      case "data":
        if (msg.topic === "captions" && msg.payload && typeof msg.payload === "object") {
          const c = msg.payload;
          return this._emit("caption", {
            from: msg.from, ts: msg.ts, speaker: String(c.speaker || ""), segment: Number(c.segment) || 0, final: !!c.final,
            lang: String(c.lang || ""), text: String(c.text || ""), translations: { ...(c.translations || {}) },
            error: c.error ? String(c.error) : "",
          });
        }
        return this._emit("data", { from: msg.from, ts: msg.ts, topic: msg.topic, payload: msg.payload, to: msg.to });
      case "active_speakers":
        this.activeSpeakers = msg.speakers || [];
        return this._emit("activespeakers", { speakers: this.activeSpeakers });
      case "ice_restart":
        if (msg.target === "publisher") return this._restartPublisher();
        return;
      case "draining":
        this._draining = true;
        return this._emit("draining", { deadlineMs: msg.deadlineMs });
      case "ice_servers":
        return this._onICEServers(msg.iceServers || []);
      case "error":
        return this._onError(new SFUError(msg.code, msg.message, msg.ref));
      case "ping":
        return this._send({ type: "pong" });
      default:
        return; // pong, or a newer server's notice this client does not know
    }
  }

  _onJoined(msg) {
    this.id = msg.id;
    this.room = msg.room;
    this.iceServers = msg.iceServers || [];
    this._resume = msg.resumeToken ? { token: msg.resumeToken, windowMs: msg.resumeWindowMs || 0 } : null;
    const cfg = { iceServers: this.iceServers, ...(this._opts.rtcConfig || {}) };
    this.publisher = new RTCPeerConnection(cfg);
    this.subscriber = new RTCPeerConnection(cfg);
    for (const [target, pc] of [["publisher", this.publisher], ["subscriber", this.subscriber]]) {
      pc.onicecandidate = (e) => this._send({ type: "candidate", target, candidate: e.candidate ? e.candidate.toJSON() : null });
      pc.onconnectionstatechange = () => this._emit("connectionstatechange", { target, state: pc.connectionState });
      pc.oniceconnectionstatechange = () => this._watchICE(target, pc);
    }
    for (const raw of msg.participants || []) {
      const p = normParticipant(raw);
      this.participants.set(p.id, p);
      this._emit("participantjoined", { participant: p });
    }
    this._join.resolve(this);
  }

  // Fresh TURN credentials: later allocations (an ICE restart) use them.
  _onICEServers(servers) {
    this.iceServers = servers;
    for (const pc of [this.publisher, this.subscriber]) {
      if (pc) pc.setConfiguration({ ...pc.getConfiguration(), iceServers: servers, ...(this._opts.rtcConfig || {}) });
    }
  }

  async _onSubscriberOffer(sdp) {
    const next = parseTracks(sdp);
    // Tracks the new offer drops (or whose m-section now carries another
    // track: the server reuses transceivers) end before the new ones start.
    for (const [mid, t] of this._subTracks) {
      const n = next.get(mid);
      if (!n || n.participantId !== t.participantId || n.trackId !== t.trackId) {
        this._subTracks.delete(mid);
        this._emit("trackremoved", { participantId: t.participantId, trackId: t.trackId, kind: t.kind, track: t.track });
      }
    }
    const pc = this.subscriber;
    await pc.setRemoteDescription({ type: "offer", sdp });
    await this._flush("subscriber");
    await pc.setLocalDescription(await pc.createAnswer());
    this._send({ type: "answer", target: "subscriber", sdp: pc.localDescription.sdp });
    // Read the tracks from the transceivers rather than ontrack: a reused
    // transceiver keeps its MediaStreamTrack and ontrack is not always fired again.
    for (const tr of pc.getTransceivers()) {
      const n = next.get(tr.mid);
      if (!n || this._subTracks.has(tr.mid)) continue;
      const entry = { ...n, track: tr.receiver.track };
      this._subTracks.set(tr.mid, entry);
      const info = this._trackInfo(n.participantId, n.trackId);
      this._emit("trackadded", {
        participantId: n.participantId, trackId: n.trackId, kind: n.kind, track: tr.receiver.track,
        receiver: tr.receiver, muted: !!(info && info.muted),
        source: (info && info.source) || (n.kind === "audio" ? "microphone" : "camera"),
        translationOf: (info && info.translationOf) || "", lang: (info && info.lang) || "",
      });
    }
  }

  async _onCandidate(msg) {
    const pc = msg.target === "subscriber" ? this.subscriber : this.publisher;
    if (!pc || !msg.candidate || !msg.candidate.candidate) return; // end of candidates
    if (!pc.remoteDescription) {
      this._pending[msg.target === "subscriber" ? "subscriber" : "publisher"].push(msg.candidate);
      return;
    }
    await pc.addIceCandidate(msg.candidate);
  }

  async _flush(target) {
    const pc = target === "subscriber" ? this.subscriber : this.publisher;
    const list = this._pending[target];
    this._pending[target] = [];
    for (const c of list) await pc.addIceCandidate(c);
  }

  _onError(error) {
    if (error.ref === "resume") {
      // Nothing to resume (the window passed, or the server restarted).
      this._resuming = null;
      this._end(4000, error.message, error);
      return;
    }
    if (error.ref === "offer" && this._answer) {
      // The server refused our publisher offer; it rolled back, so do we.
      const a = this._answer;
      this._answer = null;
      this.publisher.setLocalDescription({ type: "rollback" }).catch(() => {});
      a.reject(error);
    }
    if (error.code === "unknown_track" && error.ref === "mute" && this._muteRetries < 10) {
      // The server learns a track with its first RTP packet; a mute sent
      // just before that is refused, so send the current state again.
      this._muteRetries++;
      setTimeout(() => {
        for (const l of this._local.values()) if (l.muted) this._sendMute(l, true);
      }, 500);
      return;
    }
    this._fail(error);
  }

  _negotiate(offerOptions) {
    const run = async () => {
      if (this.closed) throw new SFUError("closed", "session closed");
      const pc = this.publisher;
      await pc.setLocalDescription(await pc.createOffer(offerOptions));
      const answered = new Promise((resolve, reject) => (this._answer = { resolve, reject }));
      this._sendOffer();
      await answered;
    };
    const done = this._pubChain.then(run, run);
    this._pubChain = done.catch(() => {});
    return done;
  }

  // The publisher offer, with the sources of the tracks that have one.
  _sendOffer() {
    const tracks = [...this._local.values()]
      .filter((l) => l.source && l.transceiver.mid !== null)
      .map((l) => ({ mid: l.transceiver.mid, source: l.source }));
    this._send({ type: "offer", target: "publisher", sdp: this.publisher.localDescription.sdp, tracks: tracks.length ? tracks : undefined });
  }

  // ---- surviving the network ----

  // A connection disconnected for 2 s, or failed, restarts ICE: the
  // publisher's by a new offer, the subscriber's by asking the server.
  _watchICE(target, pc) {
    clearTimeout(this._iceTimers[target]);
    const state = pc.iceConnectionState;
    const restart = () => (target === "publisher" ? this._restartPublisher() : this._send({ type: "ice_restart", target: "subscriber" }));
    if (state === "failed") restart();
    else if (state === "disconnected") {
      this._iceTimers[target] = setTimeout(() => {
        if (!this.closed && ["disconnected", "failed"].includes(pc.iceConnectionState)) restart();
      }, 2000);
    }
  }

  _restartPublisher() {
    if (this.closed || !this.publisher) return;
    this._negotiate({ iceRestart: true }).catch((err) => this._fail(err instanceof SFUError ? err : new SFUError("client", String(err))));
  }

  _restartICE() {
    if (this.closed || !this.publisher || this.reconnecting) return;
    this._restartPublisher();
    this._send({ type: "ice_restart", target: "subscriber" });
  }

  _onSocketClose(code, reason) {
    if (this.closed) return;
    const attempt = this._resuming;
    if (attempt && Date.now() < attempt.deadline) {
      // This attempt failed before the server answered: try again.
      attempt.wait = Math.min(attempt.wait * 2, 2000);
      setTimeout(() => !this.closed && this._open(this._resumeMessage()), attempt.wait);
      return;
    }
    const resumable = this.id && this._resume && this._resume.windowMs > 0 && !this._join && !this._leaving && !this._draining &&
      !attempt && code !== 1000 && reason !== "resumed on another connection";
    if (!resumable) {
      this._end(code, reason);
      return;
    }
    this.reconnecting = true;
    this._resuming = { deadline: Date.now() + this._resume.windowMs, wait: 250 };
    this._emit("reconnecting", {});
    this._open(this._resumeMessage());
  }

  _resumeMessage() {
    return { type: "resume", v: PROTOCOL_VERSION, participantId: this.id, resumeToken: this._resume.token };
  }

  // Resumed: the room as it is now replaces what this client knew.
  async _onResumed(msg) {
    this._resuming = null;
    this.reconnecting = false;
    this._resume = { token: msg.resumeToken, windowMs: msg.resumeWindowMs || 0 };
    this._onICEServers(msg.iceServers || []);
    const next = new Map((msg.participants || []).map((p) => [p.id, normParticipant(p)]));
    for (const id of [...this.participants.keys()]) {
      if (next.has(id)) continue;
      this.participants.delete(id);
      this._emit("participantleft", { participantId: id });
    }
    for (const [id, p] of next) {
      const had = this.participants.get(id);
      this.participants.set(id, p);
      if (!had) {
        this._emit("participantjoined", { participant: p });
        continue;
      }
      for (const t of had.tracks) {
        if (!p.tracks.some((x) => x.id === t.id)) this._emit("trackunpublished", { participantId: id, trackId: t.id });
      }
      for (const t of p.tracks) {
        const old = had.tracks.find((x) => x.id === t.id);
        if (!old) this._emit("trackpublished", { participantId: id, track: t });
        else if (!!old.muted !== !!t.muted) this._emit("mute", { participantId: id, trackId: t.id, kind: t.kind, muted: !!t.muted, local: false });
      }
      if (had.status !== "connected") this._emit("participantstatus", { participantId: id, status: "connected" });
    }
    // A publish offer whose answer was lost goes again; connections that
    // dropped meanwhile restart.
    if (this.publisher.signalingState === "have-local-offer" && this._answer) this._sendOffer();
    else if (["disconnected", "failed"].includes(this.publisher.iceConnectionState)) this._restartPublisher();
    if (["disconnected", "failed"].includes(this.subscriber.iceConnectionState)) this._send({ type: "ice_restart", target: "subscriber" });
    for (const l of this._local.values()) if (l.muted) this._sendMute(l, true);
    const outbox = this._outbox;
    this._outbox = [];
    for (const m of outbox) this._send(m);
    this._emit("reconnected", {});
  }

  _trackInfo(participantId, trackId) {
    const p = this.participants.get(participantId);
    return p ? p.tracks.find((t) => t.id === trackId) : undefined;
  }

  _end(code, reason, cause) {
    if (this.closed) return;
    this.closed = true;
    this.reconnecting = false;
    if (typeof window !== "undefined") {
      window.removeEventListener("pagehide", this._onPageHide);
      window.removeEventListener("online", this._onOnline);
    }
    for (const t of Object.values(this._iceTimers)) clearTimeout(t);
    clearInterval(this._heartbeat);
    if (this._ws && this._ws.readyState <= WebSocket.OPEN) this._ws.close(1000, "closed");
    for (const pc of [this.publisher, this.subscriber]) if (pc) pc.close();
    const error = cause || (code === 1000 ? null : new SFUError("closed", `connection closed (${code}${reason ? ": " + reason : ""})`));
    if (this._answer) this._answer.reject(error || new SFUError("closed", "session closed"));
    this._answer = null;
    if (this._join) {
      this._join.reject(error || new SFUError("closed", "connection closed before joined"));
      return;
    }
    for (const t of this._subTracks.values()) {
      this._emit("trackremoved", { participantId: t.participantId, trackId: t.trackId, kind: t.kind, track: t.track });
    }
    this._subTracks.clear();
    this._emit("close", { code, reason, error });
  }
}

function normParticipant(p) {
  return {
    id: p.id, name: p.name || "", tracks: (p.tracks || []).map((t) => ({ ...t })), status: "connected",
    language: p.language || "", translateTo: p.translateTo || "", agent: !!p.agent,
  };
}

/**
 * The tracks a subscriber offer sends: mid → {participantId, trackId, kind},
 * from each live m-section's msid (stream id = publisher id).
 * @param {string} sdp
 */
export function parseTracks(sdp) {
  const out = new Map();
  for (const section of sdp.split(/\r?\n(?=m=)/).slice(1)) {
    const lines = section.split(/\r?\n/);
    const [kind, port] = lines[0].slice(2).split(" ");
    let mid = null, msid = null, dir = "sendrecv";
    for (const l of lines) {
      if (l.startsWith("a=mid:")) mid = l.slice(6).trim();
      else if (l.startsWith("a=msid:")) msid = l.slice(7).trim().split(/\s+/);
      else if (/^a=(sendrecv|sendonly|recvonly|inactive)$/.test(l.trim())) dir = l.trim().slice(2);
    }
    if (port === "0" || mid === null || !msid || msid.length < 2 || (dir !== "sendonly" && dir !== "sendrecv")) continue;
    if (kind !== "audio" && kind !== "video") continue;
    out.set(mid, { participantId: msid[0], trackId: msid[1], kind });
  }
  return out;
}
