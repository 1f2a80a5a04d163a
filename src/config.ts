// One typed, validated config object per role. Precedence: flags > NBD_TUNNEL_* env > --config
// file > defaults (commander applies the first two, config-file.ts the third; this file checks
// values and reads files).
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { LOG_LEVELS, type Logger, type LogLevel } from './log.js';
import { RevocationList } from './revocation/index.js';
import { identityPatternProblem, routeNameProblem, routePatternProblem, socketPathProblem } from './routes/index.js';
import {
  DEFAULT_KEEPALIVE_INTERVAL_MS,
  DEFAULT_KEEPALIVE_TIMEOUT_MS,
  DEFAULT_MAX_STREAMS,
  DEFAULT_STREAM_WINDOW,
  INITIAL_STREAM_WINDOW,
  chooseProxy,
  type ProxyChoice,
  type SessionOptions,
} from './tunnel/index.js';

/** A bad flag value: printed as one line naming the flag, exit status 2. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

export interface TlsFiles {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
  /** --crl (or ca-crl.pem in --pki-dir): peer certificates it revokes are refused. */
  crl: RevocationList | undefined;
}

export interface CommonConfig {
  /** Route name to UNIX socket path: --route and the config file's `route`. */
  routes: Map<string, string>;
  /** --route-dir: route NAME is DIR/NAME.sock (dest: when it exists; source: the default for `route add`). */
  routeDir: string | undefined;
  /** --config: the file SIGHUP reads again. */
  configFile: string | undefined;
  /** undefined with --insecure (plain ws:// on loopback). */
  tls: TlsFiles | undefined;
  token: string | undefined;
  logLevel: LogLevel;
  /** 'auto': on a terminal, without an explicit --log-level, the source shows progress bars. */
  logFormat: 'auto' | 'json';
  session: Omit<SessionOptions, 'client'>;
  /** Follow NBD in each stream for logs (export, progress, errors); off: a blind pipe. */
  inspect: boolean;
  /** --metrics: where to serve /metrics and /status. */
  metrics: { host: string; port: number } | undefined;
  /** On SIGTERM/SIGINT, open streams may finish for this long before they are closed. */
  drainTimeoutMs: number;
}

export interface DestConfig extends CommonConfig {
  /** Builds the config again from the flags and the files (SIGHUP); throws ConfigError as at start. */
  reload(): DestConfig;
  host: string;
  port: number;
  /** Processes serving the port; each tunnel connection is served by one of them. */
  workers: number;
  /** --allow: route → client identity patterns; undefined when none is given. */
  allow: Map<string, string[]> | undefined;
  maxSessions: number;
  /** TLS handshake + upgrade deadline for a new connection. */
  upgradeTimeoutMs: number;
  /** --vm: the QEMUs `nbd-tunnel migrate` may migrate into, by name, and their QMP sockets. */
  vms: Map<string, string>;
}

export interface SourceConfig extends CommonConfig {
  reload(): SourceConfig;
  url: string;
  servername: string | undefined;
  /** --proxy, or HTTPS_PROXY unless NO_PROXY names the destination. */
  proxy: ProxyChoice;
  /** Tunnel connections (one process each); QEMU connections are spread across them. */
  connections: number;
  /** Mode and group of the route sockets QEMU connects to. */
  socketAccess: { mode: number; gid: number | undefined };
  /** --control: the local socket `nbd-tunnel route` talks to, and its mode. */
  control: { path: string; mode: number } | undefined;
}

/** Raw option values as commander hands them over. */
export interface CommonFlags {
  route: string[];
  routeDir?: string;
  config?: string;
  ca?: string;
  cert?: string;
  key?: string;
  crl?: string;
  /** A directory in the layout QEMU and libvirt use (/etc/pki/qemu). */
  pkiDir?: string;
  insecure?: boolean;
  tokenFile?: string;
  logLevel: LogLevel;
  logFormat: 'auto' | 'json';
  streamWindow: string;
  maxStreams: string;
  keepaliveInterval: string;
  keepaliveTimeout: string;
  resumeTimeout: string;
  drainTimeout: string;
  inspect: boolean;
  metrics?: string;
}

export interface DestFlags extends CommonFlags {
  listen?: string;
  vm: string[];
  workers: string;
  allow: string[];
  maxSessions: string;
  handshakeTimeout: string;
}

export interface SourceFlags extends CommonFlags {
  connect?: string;
  servername?: string;
  proxy?: string;
  connections: string;
  socketMode: string;
  socketGroup?: string;
  control?: string;
  controlMode: string;
}

export const DEFAULTS = {
  streamWindow: String(DEFAULT_STREAM_WINDOW),
  maxStreams: String(DEFAULT_MAX_STREAMS),
  keepaliveInterval: String(DEFAULT_KEEPALIVE_INTERVAL_MS / 1000),
  keepaliveTimeout: String(DEFAULT_KEEPALIVE_TIMEOUT_MS / 1000),
  resumeTimeout: '60',
  drainTimeout: '30',
  processes: '1',
  socketMode: '0660',
  controlMode: '0600',
  maxSessions: '64',
  handshakeTimeout: '10',
};

const MAX_PROCESSES = 64;

/** `reread`: the flags as SIGHUP should see them (the config file read again); by default the same. */
export function destConfig(flags: DestFlags, reread: () => DestFlags = () => flags): DestConfig {
  const { host, port } = parseListen(required('--listen <HOST:PORT>', flags.listen));
  if (flags.insecure && !isLoopback(host)) {
    throw new ConfigError(`--insecure: plain ws:// only on a loopback --listen address, not '${host}'`);
  }
  const workers = parseProcesses('--workers', flags.workers);
  // A destination that only receives migrations (--vm) needs no route of its own.
  const common = commonConfig(flags, 'server', flags.vm.length > 0 ? null : '--route-dir DIR or --vm NAME=QMP_SOCKET');
  const vms = parseNamedSockets('--vm', flags.vm);
  return {
    ...common,
    reload: () => destConfig(reread(), reread),
    host,
    port,
    workers,
    allow: parseAllow(flags.allow, new Set([...common.routes.keys(), ...vms.keys()]), common.routeDir),
    maxSessions: parsePositiveInt('--max-sessions', flags.maxSessions),
    upgradeTimeoutMs: parseSeconds('--handshake-timeout', flags.handshakeTimeout),
    vms,
  };
}

/** --connect: wss://HOST:PORT, or ws:// to a loopback address with --insecure. */
function parseConnect(connect: string, insecure: boolean | undefined): URL {
  let url: URL;
  try {
    url = new URL(connect);
  } catch {
    throw new ConfigError(`--connect '${connect}': not a URL; expected wss://HOST:PORT`);
  }
  if (insecure) {
    if (url.protocol !== 'ws:' || !isLoopback(url.hostname.replace(/^\[|\]$/g, ''))) {
      throw new ConfigError(`--insecure: only with --connect ws://LOOPBACK:PORT, not '${connect}'`);
    }
  } else if (url.protocol !== 'wss:') {
    throw new ConfigError(`--connect '${connect}': the scheme must be wss:// (ws:// only with --insecure, on loopback)`);
  }
  if (!url.port) throw new ConfigError(`--connect '${connect}': give the port, as in wss://HOST:PORT`);
  return url;
}

export function sourceConfig(flags: SourceFlags, reread: () => SourceFlags = () => flags): SourceConfig {
  const url = parseConnect(required('--connect <URL>', flags.connect), flags.insecure);
  const connections = parseProcesses('--connections', flags.connections);
  const routesOptional = flags.routeDir !== undefined || flags.control !== undefined;
  return {
    ...commonConfig(flags, 'client', routesOptional ? null : '--route-dir DIR or --control SOCKET'),
    reload: () => sourceConfig(reread(), reread),
    url: url.toString(),
    servername: flags.servername,
    proxy: parseProxy(flags.proxy, url, flags.insecure),
    connections,
    socketAccess: { mode: parseMode('--socket-mode', flags.socketMode), gid: flags.socketGroup === undefined ? undefined : parseGroup('--socket-group', flags.socketGroup) },
    control: flags.control === undefined ? undefined : { path: socketPath('--control', flags.control), mode: parseControlMode(flags.controlMode) },
  };
}

export interface MigrateFlags {
  qmp: string;
  connect: string;
  vm: string;
  disk: string[];
  storageOnly?: boolean;
  copyMode: 'background' | 'write-blocking';
  speed?: string;
  servername?: string;
  proxy?: string;
  ca?: string;
  cert?: string;
  key?: string;
  crl?: string;
  pkiDir?: string;
  tokenFile?: string;
  insecure?: boolean;
  logLevel: LogLevel;
  logFormat: 'auto' | 'json';
}

export interface MigrateCommandConfig {
  qmp: string;
  url: string;
  servername: string | undefined;
  proxy: ProxyChoice;
  tls: TlsFiles | undefined;
  token: string | undefined;
  vm: string;
  disks: string[];
  storageOnly: boolean;
  copyMode: 'background' | 'write-blocking';
  /** Bytes per second per disk; 0: no limit. */
  speed: number;
  logLevel: LogLevel;
  logFormat: 'auto' | 'json';
}

export function migrateConfig(flags: MigrateFlags): MigrateCommandConfig {
  const url = parseConnect(flags.connect, flags.insecure);
  const vmProblem = routeNameProblem(flags.vm);
  if (vmProblem) throw new ConfigError(`--vm '${flags.vm}': ${vmProblem}`);
  let speed = 0;
  if (flags.speed !== undefined) {
    const mbps = Number(flags.speed);
    if (!(mbps > 0) || !Number.isFinite(mbps)) throw new ConfigError(`--speed '${flags.speed}': expected MB/s, a number above 0`);
    speed = Math.round(mbps * 1e6);
  }
  return {
    qmp: socketPath('--qmp', flags.qmp),
    url: url.toString(),
    servername: flags.servername,
    proxy: parseProxy(flags.proxy, url, flags.insecure),
    tls: flags.insecure ? noTls(flags) : readTls(flags, 'client'),
    token: flags.tokenFile === undefined ? undefined : readToken(flags.tokenFile),
    vm: flags.vm,
    disks: flags.disk,
    storageOnly: flags.storageOnly ?? false,
    copyMode: flags.copyMode,
    speed,
    logLevel: flags.logLevel,
    logFormat: flags.logFormat,
  };
}

/**
 * `routesOr`: what may stand in for --route (null: nothing is needed); a --route-dir alone also
 * does, on both sides.
 */
function commonConfig(flags: CommonFlags, pkiRole: 'server' | 'client', routesOr: string | null): CommonConfig {
  const keepaliveIntervalMs = parseSeconds('--keepalive-interval', flags.keepaliveInterval);
  const keepaliveTimeoutMs = parseSeconds('--keepalive-timeout', flags.keepaliveTimeout);
  const streamWindow = parseSize('--stream-window', flags.streamWindow);
  if (streamWindow < INITIAL_STREAM_WINDOW || streamWindow > 0xffffffff) {
    throw new ConfigError(`--stream-window ${flags.streamWindow}: must be between 256K and 4G-1`);
  }
  if (!(LOG_LEVELS as readonly string[]).includes(flags.logLevel)) throw new ConfigError(`--log-level '${flags.logLevel}': expected one of ${LOG_LEVELS.join(', ')}`);
  if (flags.logFormat !== 'auto' && flags.logFormat !== 'json') throw new ConfigError(`--log-format '${flags.logFormat}': expected auto or json`);
  const routeDir = flags.routeDir === undefined ? undefined : parseRouteDir(flags.routeDir);
  return {
    routes: parseRoutes(flags.route, routeDir !== undefined || routesOr === null ? null : routesOr),
    routeDir,
    configFile: flags.config,
    tls: flags.insecure ? noTls(flags) : readTls(flags, pkiRole),
    token: flags.tokenFile === undefined ? undefined : readToken(flags.tokenFile),
    logLevel: flags.logLevel,
    logFormat: flags.logFormat,
    inspect: flags.inspect,
    metrics: flags.metrics === undefined ? undefined : parseListen(flags.metrics, '--metrics'),
    drainTimeoutMs: parseSeconds('--drain-timeout', flags.drainTimeout),
    session: {
      resumeTimeoutMs: parseSeconds('--resume-timeout', flags.resumeTimeout),
      streamWindow,
      maxStreams: parsePositiveInt('--max-streams', flags.maxStreams),
      keepaliveIntervalMs,
      keepaliveTimeoutMs,
    },
  };
}

/** --insecure: no TLS, so certificate flags would be silently ignored; say so instead. */
function noTls(flags: Pick<CommonFlags, 'ca' | 'cert' | 'key' | 'crl' | 'pkiDir'>): undefined {
  const given = (['ca', 'cert', 'key', 'crl', 'pkiDir'] as const).filter((name) => flags[name] !== undefined);
  if (given.length > 0) {
    const names = given.map((name) => (name === 'pkiDir' ? '--pki-dir' : `--${name}`)).join(', ');
    throw new ConfigError(`${names}: not used with --insecure (plain ws://, no TLS); drop ${given.length > 1 ? 'them' : 'it'} or --insecure`);
  }
  return undefined;
}

/**
 * --ca/--cert/--key, each defaulting to its file in --pki-dir (ca-cert.pem, <role>-cert.pem,
 * <role>-key.pem); --crl, defaulting to --pki-dir's ca-crl.pem when there is one, as QEMU reads it.
 */
function readTls(flags: Pick<CommonFlags, 'ca' | 'cert' | 'key' | 'crl' | 'pkiDir'>, pkiRole: 'server' | 'client'): TlsFiles {
  const path = (flag: string, given: string | undefined, file: string): string => {
    if (given !== undefined) return given;
    if (flags.pkiDir !== undefined) return join(flags.pkiDir, file);
    throw new ConfigError(`${flag}: required (or --pki-dir with ${file})`);
  };
  const caPath = path('--ca', flags.ca, 'ca-cert.pem');
  const certPath = path('--cert', flags.cert, `${pkiRole}-cert.pem`);
  const keyPath = path('--key', flags.key, `${pkiRole}-key.pem`);
  const ca = readPem('--ca', caPath);
  const cert = readPem('--cert', certPath);
  checkValidity('--cert', certPath, cert);
  const key = readPem('--key', keyPath);
  refuseWorldReadable('--key', keyPath);
  checkKeyMatches(certPath, cert, keyPath, key);
  const pkiCrl = flags.pkiDir === undefined ? undefined : join(flags.pkiDir, 'ca-crl.pem');
  const crlPath = flags.crl ?? (pkiCrl !== undefined && existsSync(pkiCrl) ? pkiCrl : undefined);
  return { ca, cert, key, crl: crlPath === undefined ? undefined : readCrl(crlPath, ca) };
}

/** A CRL file that does not check out is refused here, at start or SIGHUP, not found out in handshakes later. */
function readCrl(path: string, ca: Buffer): RevocationList {
  const pem = readPem('--crl', path);
  try {
    return RevocationList.load(path, pem.toString('latin1'), ca);
  } catch (error) {
    throw new ConfigError(`--crl ${path}: ${(error as Error).message}`);
  }
}

/** --proxy, or the environment's HTTPS_PROXY/NO_PROXY; with --insecure (ws:// on loopback) there is none. */
function parseProxy(flag: string | undefined, url: URL, insecure: boolean | undefined): ProxyChoice {
  if (insecure) {
    if (flag) throw new ConfigError('--proxy: not used with --insecure (plain ws:// on loopback); drop one of them');
    return { proxy: undefined, summary: undefined };
  }
  try {
    return chooseProxy(flag, url, process.env);
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }
}

/** A flag commander cannot require itself, since the config file may give it. */
function required(flag: string, value: string | undefined): string {
  if (value === undefined) throw new ConfigError(`required option '${flag}' not specified (or give it in --config)`);
  return value;
}

/** `orElse`: what else may give routes, when none is given (null: none needed). */
export function parseRoutes(values: string[], orElse: string | null): Map<string, string> {
  if (values.length === 0 && orElse !== null) throw new ConfigError(`--route: give at least one, as NAME=SOCKET, or ${orElse}`);
  return parseNamedSockets('--route', values);
}

/** NAME=SOCKET values (--route, --vm): names as route names are, sockets absolute, each name once. */
function parseNamedSockets(flag: string, values: string[]): Map<string, string> {
  const named = new Map<string, string>();
  for (const value of values) {
    const eq = value.indexOf('=');
    if (eq < 0) throw new ConfigError(`${flag} '${value}': expected NAME=SOCKET`);
    const name = value.slice(0, eq);
    const socket = value.slice(eq + 1);
    const badName = routeNameProblem(name);
    if (badName) throw new ConfigError(`${flag} '${value}': ${badName}`);
    if (socket === '') throw new ConfigError(`${flag} '${value}': the socket path is empty`);
    if (named.has(name)) throw new ConfigError(`${flag} '${value}': '${name}' is given twice`);
    named.set(name, socketPath(`${flag} '${value}'`, socket));
  }
  return named;
}

/** An absolute socket path that fits in sun_path. */
function socketPath(flag: string, value: string): string {
  const path = resolve(value);
  const problem = socketPathProblem(path);
  if (problem) throw new ConfigError(`${flag}: ${problem}`);
  return path;
}

function parseRouteDir(value: string): string {
  const dir = resolve(value);
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch (error) {
    throw new ConfigError(`--route-dir ${dir}: cannot read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  if (!isDir) throw new ConfigError(`--route-dir ${dir}: not a directory`);
  return dir;
}

/** HOST:PORT, [ADDR]:PORT, or :PORT for every IPv4 address (0.0.0.0). */
export function parseListen(value: string, flag = '--listen'): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(value);
  if (!match) throw new ConfigError(`${flag} '${value}': expected HOST:PORT, :PORT for every address, or [ADDR]:PORT for IPv6`);
  const port = Number(match[3]);
  if (port > 65535) throw new ConfigError(`${flag} '${value}': port must be 0-65535 (0: any free port, logged)`);
  return { host: match[1] ?? (match[2] || '0.0.0.0'), port };
}

/** Sizes as bytes, or with a K/M/G suffix (binary units). */
export function parseSize(flag: string, value: string): number {
  const match = /^(\d+)\s*([KMG]i?B?)?$/i.exec(value.trim());
  if (!match) throw new ConfigError(`${flag} '${value}': expected a size such as 16M or 16777216`);
  const unit = (match[2] ?? '').charAt(0).toUpperCase();
  const scale = unit === 'K' ? 1024 : unit === 'M' ? 1024 ** 2 : unit === 'G' ? 1024 ** 3 : 1;
  return Number(match[1]) * scale;
}

/** Seconds, as a number or with a unit: `30`, `30s`, `500ms`, `2m`. Returns milliseconds. */
function parseSeconds(flag: string, value: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(value.trim());
  if (!match) throw new ConfigError(`${flag} '${value}': expected seconds, 0 or more (30, 30s, 500ms or 2m)`);
  const unitMs = { ms: 1, s: 1000, m: 60_000 }[(match[2] ?? 's') as 'ms' | 's' | 'm'];
  return Math.round(Number(match[1]) * unitMs);
}

/** Loopback: 127.0.0.0/8, ::1, localhost. */
function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/**
 * ROUTE=IDENTITY[,IDENTITY...], ROUTE a route name or a prefix ending in `*`. An exact name must
 * be a --route unless --route-dir may bring it.
 */
/** `routes`: the names an exact rule may name (routes, and the --vm names, which --allow covers too). */
function parseAllow(values: string[], routes: ReadonlySet<string>, routeDir: string | undefined): Map<string, string[]> | undefined {
  if (values.length === 0) return undefined;
  const allow = new Map<string, string[]>();
  for (const value of values) {
    const eq = value.indexOf('=');
    const route = value.slice(0, eq);
    if (eq < 0 || route === '') throw new ConfigError(`--allow '${value}': expected ROUTE=IDENTITY[,IDENTITY...] (ROUTE may end in *, as in vm1-*)`);
    const badRoute = routePatternProblem(route);
    if (badRoute) throw new ConfigError(`--allow '${value}': ${badRoute}`);
    if (!route.endsWith('*') && routeDir === undefined && !routes.has(route)) {
      throw new ConfigError(`--allow '${value}': route '${route}' is not given with --route (or --vm)`);
    }
    const identities = value.slice(eq + 1).split(',').map((i) => i.trim());
    for (const identity of identities) {
      const problem = identityPatternProblem(identity);
      if (problem) throw new ConfigError(`--allow '${value}': ${problem}`);
    }
    allow.set(route, [...(allow.get(route) ?? []), ...identities]);
  }
  return allow;
}

export function parseMode(flag: string, value: string): number {
  if (!/^0?[0-7]{3}$/.test(value)) throw new ConfigError(`${flag} '${value}': expected an octal mode such as 0660`);
  const mode = parseInt(value, 8);
  if (mode & 0o007) throw new ConfigError(`${flag} ${value}: other users must not reach the sockets; use 0660 or stricter`);
  return mode;
}

/** The control socket adds and removes listeners: owner and group at most, no execute bits. */
function parseControlMode(value: string): number {
  const mode = parseMode('--control-mode', value);
  if (mode & 0o111) throw new ConfigError(`--control-mode ${value}: use 0600 (owner only, the default) or 0660`);
  return mode;
}

/** A group name (from /etc/group) or number. */
export function parseGroup(flag: string, value: string): number {
  if (/^\d+$/.test(value)) return Number(value);
  let groups = '';
  try {
    groups = readFileSync('/etc/group', 'utf8');
  } catch {
    // fall through to "no such group"
  }
  const line = groups.split('\n').find((l) => l.split(':')[0] === value);
  if (!line) throw new ConfigError(`${flag} '${value}': no such group in /etc/group (give a name or a number)`);
  return Number(line.split(':')[2]);
}

function parseProcesses(flag: string, value: string): number {
  const n = parsePositiveInt(flag, value);
  if (n > MAX_PROCESSES) throw new ConfigError(`${flag} ${value}: at most ${MAX_PROCESSES}`);
  return n;
}

function parsePositiveInt(flag: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new ConfigError(`${flag} '${value}': expected a whole number, 1 or more`);
  return n;
}

function readPem(flag: string, path: string): Buffer {
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch (error) {
    throw new ConfigError(`${flag} ${path}: cannot read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  if (!data.includes('-----BEGIN ')) throw new ConfigError(`${flag} ${path}: not a PEM file`);
  return data;
}

/** A secret (private key, token) that every user of the machine may read is refused. */
function refuseWorldReadable(flag: string, path: string): void {
  const mode = statSync(path).mode & 0o777;
  if (mode & 0o004) {
    throw new ConfigError(`${flag} ${path}: readable by every user (mode 0${mode.toString(8)}); chmod o-rwx it`);
  }
}

/** This side's own certificate must be valid now; the peer would refuse it anyway, less clearly. */
function checkValidity(flag: string, path: string, pem: Buffer): void {
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(pem);
  } catch (error) {
    throw new ConfigError(`${flag} ${path}: not a certificate: ${(error as Error).message}`);
  }
  const now = Date.now();
  const from = Date.parse(certificate.validFrom);
  const to = Date.parse(certificate.validTo);
  if (now < from || now > to) {
    const state = now < from ? 'not yet valid' : 'expired';
    throw new ConfigError(`${flag} ${path}: certificate ${state}: valid from ${certificate.validFrom} to ${certificate.validTo}`);
  }
}

/** A key that is not the certificate's fails every handshake later with OpenSSL's words; name both files now. */
function checkKeyMatches(certPath: string, cert: Buffer, keyPath: string, key: Buffer): void {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key);
  } catch (error) {
    throw new ConfigError(`--key ${keyPath}: not a private key this process can read (${(error as Error).message}); an encrypted key must be decrypted first`);
  }
  let matches = false;
  try {
    matches = new X509Certificate(cert).checkPrivateKey(privateKey);
  } catch {
    // not a certificate: checkValidity has named that already
  }
  if (!matches) throw new ConfigError(`--key ${keyPath} is not the private key of --cert ${certPath}: give the key made with that certificate`);
}

function readToken(path: string): string {
  let token: string;
  try {
    token = readFileSync(path, 'utf8').trim();
  } catch (error) {
    throw new ConfigError(`--token-file ${path}: cannot read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  refuseWorldReadable('--token-file', path);
  if (token === '') throw new ConfigError(`--token-file ${path}: the file is empty`);
  return token;
}

/**
 * SIGHUP: build the configuration again (the config file and the certificate files read again)
 * and hand it to `apply`; a file that fails the checks keeps the running configuration, with an
 * error line. Returns the function that stops listening for SIGHUP.
 */
export function reloadOnHangup<T extends CommonConfig & { reload(): T }>(config: T, apply: (next: T) => void, log: Logger): () => void {
  let current = config;
  const onHangup = (): void => {
    let next: T;
    try {
      next = current.reload();
    } catch (error) {
      const msg = current.configFile ? 'configuration reload failed; keeping the running one' : 'certificate reload failed; keeping the current ones';
      log.error({ reason: (error as Error).message, config: current.configFile }, msg);
      return;
    }
    current = next;
    apply(next);
  };
  process.on('SIGHUP', onHangup);
  return () => process.off('SIGHUP', onHangup);
}
