// TypeScript declarations for sfu.js, the SFU's browser client (served
// beside it at /client/sfu.d.ts). The protocol itself is sfu/PROTOCOL.md.

/** The protocol version this client speaks. */
export const PROTOCOL_VERSION: 1;

/** The simulcast layers camera video is published as, lowest first. */
export const SIMULCAST_LAYERS: readonly RTCRtpEncodingParameters[];

/** Error codes of PROTOCOL.md, plus "client" and "closed" for local failures. */
export type ErrorCode =
  | "bad_message" | "unknown_type" | "identity_limit" | "too_large" | "version" | "unauthorized"
  | "not_joined" | "already_joined" | "unknown_room" | "room_full" | "too_many_rooms" | "too_many_tracks"
  | "bad_sdp" | "bad_candidate" | "unknown_track" | "rate_limited" | "resume_failed"
  | "unknown_participant" | "draining" | "internal" | "client" | "closed";

/** An error the server reported, or a client-side failure. */
export class SFUError extends Error {
  constructor(code: ErrorCode | string, message: string, ref?: string);
  readonly name: "SFUError";
  /** One of PROTOCOL.md's codes, "client" or "closed". */
  readonly code: ErrorCode | string;
  /** The type of the message that caused it, if the server said. */
  readonly ref?: string;
}

export type TrackSource = "camera" | "microphone" | "screen" | "screen_audio" | "translation";

export interface TrackInfo {
  /** The publisher's track id (its SDP msid). */
  id: string;
  kind: "audio" | "video";
  codec?: string;
  muted?: boolean;
  source?: TrackSource;
  /** Of a "translation" track: whose words (a participant id). */
  translationOf?: string;
  /** Of a "translation" track: its language. */
  lang?: string;
  /** Simulcast layers the publisher sends (absent: one). */
  layers?: number;
  /** The layer this client receives (0 the lowest), -1 while paused; simulcast tracks only. */
  layer?: number;
}

export interface Participant {
  id: string;
  name: string;
  tracks: TrackInfo[];
  /** "reconnecting" while its signalling is gone (its media may go on). */
  status: "connected" | "reconnecting";
  /** The language it speaks ("" if it did not say). */
  language: string;
  /** The language it wants others in ("" for none). */
  translateTo: string;
  /** A service in the room (the translation agent), not a person. */
  agent: boolean;
}

/** What someone said, with its translations, from the translation agent. */
export interface Caption {
  from: string;
  ts: number;
  /** Whose words. */
  speaker: string;
  /** That speaker's utterance number, from 1. */
  segment: number;
  /** false: the words so far while the speaker talks (as spoken, no translations), replaced by the next caption of this segment. */
  final: boolean;
  /** The language spoken. */
  lang: string;
  text: string;
  /** The text in each language someone wants, by language tag. */
  translations: Record<string, string>;
  /** Why words are missing (recognition or a translation failed); "" when none are. */
  error: string;
}

export interface Speaker {
  participantId: string;
  /** From 0 (silence) to 1 (loudest). */
  level: number;
}

export interface SessionEventMap {
  participantjoined: CustomEvent<{ participant: Participant }>;
  participantleft: CustomEvent<{ participantId: string }>;
  participantstatus: CustomEvent<{ participantId: string; status: "connected" | "reconnecting" }>;
  trackpublished: CustomEvent<{ participantId: string; track: TrackInfo }>;
  trackunpublished: CustomEvent<{ participantId: string; trackId: string }>;
  trackadded: CustomEvent<{
    participantId: string; trackId: string; kind: "audio" | "video"; source: TrackSource;
    track: MediaStreamTrack; receiver: RTCRtpReceiver; muted: boolean;
    /** Of a "translation" track: whose words, in which language ("" otherwise). */
    translationOf: string; lang: string;
  }>;
  trackremoved: CustomEvent<{ participantId: string; trackId: string; kind: "audio" | "video"; track: MediaStreamTrack }>;
  mute: CustomEvent<{ participantId: string; trackId: string; kind?: "audio" | "video"; muted: boolean; local: boolean }>;
  data: CustomEvent<{ from: string; ts: number; topic: string; payload: unknown; to?: string[] }>;
  caption: CustomEvent<Caption>;
  languages: CustomEvent<{ participantId: string; language: string; translateTo: string }>;
  activespeakers: CustomEvent<{ speakers: Speaker[] }>;
  layer: CustomEvent<{ participantId: string; trackId: string; layer: number; target: number; paused: boolean }>;
  connectionstatechange: CustomEvent<{ target: "publisher" | "subscriber"; state: RTCPeerConnectionState }>;
  reconnecting: CustomEvent<Record<string, never>>;
  reconnected: CustomEvent<Record<string, never>>;
  error: CustomEvent<{ error: SFUError }>;
  draining: CustomEvent<{ deadlineMs: number }>;
  close: CustomEvent<{ code: number; reason: string; error: SFUError | null }>;
}

export interface JoinOptions {
  room: string;
  /** Display name (the token's name claim wins). */
  name?: string;
  /** HS256 JWT; omit only on servers that allow anonymous joins. */
  token?: string;
  /** Listeners added before the join is sent, so none of the first events is missed. */
  on?: { [K in keyof SessionEventMap]?: (e: SessionEventMap[K]) => void };
  /** Merged over {iceServers} from the join reply. */
  rtcConfig?: RTCConfiguration;
  /** Language tag this participant speaks, e.g. "en". */
  language?: string;
  /** Language tag it wants captions in, e.g. "es". */
  translateTo?: string;
  /** Camera video as simulcast layers: true (default, SIMULCAST_LAYERS), false, or your own encodings, lowest first. */
  simulcast?: boolean | RTCRtpEncodingParameters[];
}

/** One participant's signalling session and its two peer connections. */
export class Session extends EventTarget {
  readonly id: string;
  readonly room: string;
  readonly iceServers: RTCIceServer[];
  /** Everyone else in the room. */
  readonly participants: Map<string, Participant>;
  readonly publisher: RTCPeerConnection | null;
  readonly subscriber: RTCPeerConnection | null;
  readonly closed: boolean;
  /** Whether the signalling connection is being resumed. */
  readonly reconnecting: boolean;
  /** The loudest participants, loudest first. */
  readonly activeSpeakers: Speaker[];
  /** The language this participant speaks and the one it wants others in. */
  readonly language: string;
  readonly translateTo: string;

  /** Publishes tracks; resolves once the server answered. */
  publish(
    media: MediaStream | MediaStreamTrack[],
    options?: { source?: "camera" | "microphone" | "screen"; simulcast?: boolean | RTCRtpEncodingParameters[] },
  ): Promise<void>;
  /** Stops sending a published track and renegotiates. */
  unpublish(track: MediaStreamTrack): Promise<void>;
  /** Sends newTrack in oldTrack's place without renegotiating. */
  replaceTrack(oldTrack: MediaStreamTrack, newTrack: MediaStreamTrack): Promise<void>;
  /** Local tracks published so far. */
  localTracks(): MediaStreamTrack[];
  /** Mutes a local track, or every local track of a kind. */
  mute(what: MediaStreamTrack | "audio" | "video", muted: boolean): void;
  isMuted(what: MediaStreamTrack | "audio" | "video"): boolean;
  /** Sends an app message (at most 8 KiB of JSON) to the room or to some participants. */
  sendData(topic: string, payload: unknown, to?: string[]): void;
  /** Changes what this participant speaks and wants captions in ("" for none). */
  setLanguages(language: string, translateTo: string): void;
  setSubscription(participantId: string, trackId: string, want?: { maxLayer?: number; paused?: boolean }): void;
  /** Leaves the room and closes everything. */
  leave(): Promise<void>;

  addEventListener<K extends keyof SessionEventMap>(type: K, listener: (e: SessionEventMap[K]) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof SessionEventMap>(type: K, listener: (e: SessionEventMap[K]) => void, options?: boolean | EventListenerOptions): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject, options?: boolean | EventListenerOptions): void;
}

/** Opens the signalling socket and joins a room; rejects with an SFUError. */
export function join(url: string, opts: JoinOptions): Promise<Session>;

/** The signalling URL of the SFU that served this module. */
export function defaultURL(moduleURL?: string): string;

/** The tracks a subscriber offer sends: mid → publisher, track and kind. */
export function parseTracks(sdp: string): Map<string, { participantId: string; trackId: string; kind: "audio" | "video" }>;
