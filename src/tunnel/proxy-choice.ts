// Which HTTP proxy, if any, the source reaches the destination through, decided as curl does:
// --proxy (or NBD_TUNNEL_PROXY, or the config file) first, else https_proxy / HTTPS_PROXY; and
// no proxy for a host that no_proxy / NO_PROXY names (`*`, the host itself, or a domain of it).
import type { HttpProxy } from './http-proxy.js';

/** The port curl assumes for a proxy URL without one. */
const DEFAULT_PROXY_PORT = 1080;

export interface ProxyChoice {
  proxy: HttpProxy | undefined;
  /** For the start line: the proxy and where it was set, or why none is used; undefined when none is set. */
  summary: string | undefined;
}

/**
 * `flag`: --proxy's value ('' means no proxy, whatever the environment says). Throws an Error
 * naming the flag or variable when the value is not an http:// proxy URL.
 */
export function chooseProxy(flag: string | undefined, destination: URL, env: NodeJS.ProcessEnv): ProxyChoice {
  const setting = flag !== undefined ? { name: '--proxy', value: flag.trim() } : fromEnv(env, 'https_proxy');
  if (!setting || setting.value === '') return { proxy: undefined, summary: undefined };
  const proxy = parseProxyUrl(setting.name, setting.value);
  const exempt = fromEnv(env, 'no_proxy');
  const entry = exempt && noProxyEntry(exempt.value, bare(destination.hostname).toLowerCase());
  if (exempt && entry) return { proxy: undefined, summary: `none: ${exempt.name} names '${entry}'` };
  return { proxy, summary: `${proxy.label.slice(setting.name.length + 1)} (${setting.name})` };
}

/** The lower-case variable first, as curl reads them; an empty one counts as unset. */
function fromEnv(env: NodeJS.ProcessEnv, lower: string): { name: string; value: string } | undefined {
  for (const name of [lower, lower.toUpperCase()]) {
    const value = env[name]?.trim();
    if (value) return { name, value };
  }
  return undefined;
}

/** http://[USER:PASSWORD@]HOST[:PORT]; HOST:PORT alone is taken as http://, as curl does. */
function parseProxyUrl(name: string, value: string): HttpProxy {
  const text = /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`;
  const shown = `${name} '${text.replace(/\/\/([^/@:]*):[^/@]*@/, '//$1:***@')}'`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new Error(`${shown}: not a URL; expected http://HOST:PORT`);
  }
  if (url.protocol !== 'http:') throw new Error(`${shown}: only http:// proxies are supported (CONNECT in plain HTTP), not ${url.protocol}//`);
  // URL drops a port equal to the scheme's default (80), so read it from the text.
  const port = /^[a-z]+:\/\/(?:[^@/]*@)?(?:\[[^\]]*\]|[^:/?#]*):(\d+)/i.exec(text)?.[1];
  const host = bare(url.hostname);
  const credentials = url.username || url.password ? `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}` : undefined;
  return { host, port: port ? Number(port) : DEFAULT_PROXY_PORT, credentials, label: `${name} http://${url.hostname}:${port ?? DEFAULT_PROXY_PORT}` };
}

/** The entry of a no_proxy list that covers `host`, if any. */
function noProxyEntry(list: string, host: string): string | undefined {
  return list
    .split(/[\s,]+/)
    .filter((entry) => entry !== '')
    .find((entry) => {
      const name = bare(entry.toLowerCase()).replace(/^\./, '');
      return name === '*' || host === name || host.endsWith(`.${name}`);
    });
}

/** An IPv6 address without its URL brackets. */
function bare(host: string): string {
  return host.replace(/^\[(.*)\]$/, '$1');
}
