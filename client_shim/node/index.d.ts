// Types for agent-telemetry-shim: fire-and-forget events and spans to the local daemon.

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type Properties = { [key: string]: JsonValue };

export interface TrackOptions {
  /** A Date, or an RFC 3339 string with an offset. Default: now. */
  timestamp?: Date | string;
  /** A UUID string; default: a UUIDv7 from the event's time. */
  uuid?: string;
  /** The source's name; default: AGENT_TELEMETRY_AGENT, else the script's name. */
  agent?: string;
  /** W3C trace context, as spans set them: 32 and 16 lowercase hex digits. */
  trace_id?: string;
  span_id?: string;
  parent_span_id?: string;
}

export interface Span {
  readonly name: string;
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string | null;
  readonly properties: Properties;
  /** Add or replace one property of the span's event; never throws. */
  set(key: string, value: JsonValue): Span;
}

export interface Stats {
  queued: number;
  sent: number;
  spooled: number;
  spoolFiles: number;
  dropped: number;
  drops: {
    backlog_full: number;
    invalid: number;
    too_large: number;
    spool_full: number;
    spool_failed: number;
    mode_off: number;
    disabled: number;
    no_socket_path: number;
  };
  connected: boolean;
  connectFailures: number;
  disabled: boolean;
  agent: string;
  socketPath: string | null;
  spoolDir: string | null;
}

export interface ConfigureOptions {
  agent?: string;
  disabled?: boolean;
  socketPath?: string;
  spoolDir?: string;
}

/** Queue one event for the daemon; never throws, never waits. */
export function track(event: string, properties?: Properties | null, options?: TrackOptions): void;

/**
 * Run `fn(span)` as a span: one event when it ends, with its start as the timestamp,
 * `duration_ms`, trace ids, and on a throw or rejection `status: "error"` and the error's
 * type (never its message). Returns what `fn` returns; errors from `fn` go on unchanged.
 */
export function span<T>(name: string, properties: Properties | null | undefined, fn: (span: Span) => T): T;
export function span<T>(name: string, fn: (span: Span) => T): T;

/** The innermost open span of this async context, or a stand-in whose set() does nothing. */
export function currentSpan(): Span;

/** Resolves true once everything queued is written to the daemon (or its spool). */
export function flush(timeoutMs?: number): Promise<boolean>;
export function stats(): Stats;
export function configure(options?: ConfigureOptions): void;

export function uuid7(ms?: number): string;
export function encodeEvent(event: string, properties?: Properties | null, options?: TrackOptions, nowMs?: number): string;
export function runtimeDir(env?: NodeJS.ProcessEnv, platform?: string): string;
export function ingestSocketPath(env?: NodeJS.ProcessEnv, platform?: string): string;
export function dataDir(env?: NodeJS.ProcessEnv, platform?: string): string;
export function spoolDir(env?: NodeJS.ProcessEnv, platform?: string): string;
