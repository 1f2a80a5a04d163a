// The flags of the two proxies, and of `check`, which takes the source's so that it runs with the
// very command line of the source it checks. Every one can also come from NBD_TUNNEL_<NAME>.
import { Option, type Command } from 'commander';
import { ConfigError, DEFAULTS, sourceConfig, type SourceConfig, type SourceFlags } from './config.js';
import { loadFlags } from './config-file.js';
import { LOG_LEVELS } from './log.js';

export const collect = (value: string, previous: string[]): string[] => [...previous, value];

/** Options both roles take; every one can also come from NBD_TUNNEL_<NAME>. */
export function addCommonOptions(command: Command): Command {
  return command
    .addOption(
      new Option('--route <NAME=SOCKET>', 'a route and its UNIX socket (repeatable)')
        .argParser(collect)
        .default([])
        .env('NBD_TUNNEL_ROUTE'),
    )
    .addOption(
      new Option('--route-dir <DIR>', 'dest: route NAME is DIR/NAME.sock when that socket exists; source: where `route add` puts NAME.sock').env(
        'NBD_TUNNEL_ROUTE_DIR',
      ),
    )
    .addOption(new Option('--config <FILE>', 'JSON settings, keys as the long flags in camelCase; flags and env win; SIGHUP reads it again').env('NBD_TUNNEL_CONFIG'))
    .addOption(new Option('--ca <FILE>', 'CA certificate (PEM) the peer must be signed by').env('NBD_TUNNEL_CA'))
    .addOption(new Option('--cert <FILE>', 'this side\'s certificate (PEM)').env('NBD_TUNNEL_CERT'))
    .addOption(new Option('--key <FILE>', 'this side\'s private key (PEM)').env('NBD_TUNNEL_KEY'))
    .addOption(new Option('--crl <FILE>', 'CRLs (PEM) of --ca: a peer certificate they revoke is refused; SIGHUP reads it again').env('NBD_TUNNEL_CRL'))
    .addOption(
      new Option('--pki-dir <DIR>', 'certificates as QEMU/libvirt keep them: ca-cert.pem, server-*.pem (dest) or client-*.pem (source)').env(
        'NBD_TUNNEL_PKI_DIR',
      ),
    )
    .addOption(new Option('--token-file <FILE>', 'bearer token required in addition to the certificate').env('NBD_TUNNEL_TOKEN_FILE'))
    .addOption(new Option('--log-level <LEVEL>', 'log level').choices(LOG_LEVELS).default('info').env('NBD_TUNNEL_LOG_LEVEL'))
    .addOption(
      new Option('--log-format <FORMAT>', 'auto: a source on a terminal without --log-level shows progress bars; json: always JSON lines')
        .choices(['auto', 'json'])
        .default('auto')
        .env('NBD_TUNNEL_LOG_FORMAT'),
    )
    .addOption(
      new Option('--stream-window <SIZE>', 'the most a stream\'s receive window grows to from 1 MiB (256K to 4G-1)')
        .default(DEFAULTS.streamWindow)
        .env('NBD_TUNNEL_STREAM_WINDOW'),
    )
    .addOption(new Option('--max-streams <N>', 'streams the peer may have open per session').default(DEFAULTS.maxStreams).env('NBD_TUNNEL_MAX_STREAMS'))
    .addOption(new Option('--insecure', 'plain ws:// without TLS or certificates; only on loopback addresses (tests, local relays)'))
    .addOption(new Option('--metrics <HOST:PORT>', 'serve /metrics (Prometheus) and /status (JSON) over HTTP here').env('NBD_TUNNEL_METRICS'))
    .addOption(new Option('--no-inspect', 'do not follow NBD in streams (no export, progress or NBD error lines)').env('NBD_TUNNEL_NO_INSPECT'))
    .addOption(
      new Option('--keepalive-interval <SECONDS>', 'ping the peer this often (0: never)')
        .default(DEFAULTS.keepaliveInterval)
        .env('NBD_TUNNEL_KEEPALIVE_INTERVAL'),
    )
    .addOption(
      new Option('--keepalive-timeout <SECONDS>', 'the connection is lost after this long without a word from the peer')
        .default(DEFAULTS.keepaliveTimeout)
        .env('NBD_TUNNEL_KEEPALIVE_TIMEOUT'),
    )
    .addOption(
      new Option('--resume-timeout <SECONDS>', 'after a lost connection, keep the session and its streams this long for a reconnect (0: no resuming)')
        .default(DEFAULTS.resumeTimeout)
        .env('NBD_TUNNEL_RESUME_TIMEOUT'),
    )
    .addOption(
      new Option('--drain-timeout <SECONDS>', 'on SIGTERM/SIGINT, let open streams finish this long before closing them (a second signal: at once)')
        .default(DEFAULTS.drainTimeout)
        .env('NBD_TUNNEL_DRAIN_TIMEOUT'),
    );
}

/** Env values for a repeatable flag come as one list, separated by `separator`. */
export function splitEnvList(values: string[], separator: string): string[] {
  return values.flatMap((r) => r.split(separator)).map((r) => r.trim()).filter((r) => r !== '');
}

export const splitEnvRoutes = (routes: string[]): string[] => splitEnvList(routes, ',');

/**
 * commander turns --no-inspect off for any value of NBD_TUNNEL_NO_INSPECT, "0" and "false"
 * included; read the value as an operator means it.
 */
export function inspectSwitch(command: Command, inspect: boolean): boolean {
  if (command.getOptionValueSource('inspect') !== 'env') return inspect;
  const value = (process.env.NBD_TUNNEL_NO_INSPECT ?? '').trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(value)) return false;
  if (['', '0', 'false', 'no', 'off'].includes(value)) return true;
  throw new ConfigError(`NBD_TUNNEL_NO_INSPECT '${value}': expected 1/true/yes/on (no inspection) or 0/false/no/off`);
}

/** The source's own options, on top of the common ones. */
export function addSourceOptions(command: Command): Command {
  return addCommonOptions(
    command
      .addOption(new Option('--connect <URL>', 'the destination, as wss://HOST:PORT (required)').env('NBD_TUNNEL_CONNECT'))
      .addOption(new Option('--servername <NAME>', 'name expected in the destination certificate').env('NBD_TUNNEL_SERVERNAME'))
      .addOption(new Option('--proxy <URL>', 'reach the destination through this HTTP proxy (CONNECT), as http://[USER:PASSWORD@]HOST:PORT; default: HTTPS_PROXY unless NO_PROXY names the host').env('NBD_TUNNEL_PROXY'))
      .addOption(new Option('--socket-mode <MODE>', 'mode of the route sockets (octal)').default(DEFAULTS.socketMode).env('NBD_TUNNEL_SOCKET_MODE'))
      .addOption(new Option('--socket-group <GROUP>', 'group of the route sockets (QEMU\'s), by name or number').env('NBD_TUNNEL_SOCKET_GROUP'))
      .addOption(
        new Option('--connections <N>', 'tunnel connections, each in its own process; QEMU connections are spread across them')
          .default(DEFAULTS.processes)
          .env('NBD_TUNNEL_CONNECTIONS'),
      )
      .addOption(new Option('--control <SOCKET>', 'serve `nbd-tunnel route add|remove|list` on this local UNIX socket').env('NBD_TUNNEL_CONTROL'))
      .addOption(new Option('--control-mode <MODE>', 'mode of the control socket (0600: owner only)').default(DEFAULTS.controlMode).env('NBD_TUNNEL_CONTROL_MODE')),
  );
}

/** The source's configuration from its flags, the environment and --config; throws ConfigError. */
export function loadSourceConfig(flags: SourceFlags, command: Command): { config: SourceConfig; explicitLogLevel: boolean } {
  const loaded = loadFlags(command, { ...flags, inspect: inspectSwitch(command, flags.inspect), route: splitEnvRoutes(flags.route) });
  const explicitLogLevel = command.getOptionValueSource('logLevel') !== 'default' || loaded.fromFile.has('logLevel');
  return { config: sourceConfig(loaded.flags, loaded.reread), explicitLogLevel };
}
