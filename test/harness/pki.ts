import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from './child.js';

/** Paths of PEM files for the TLS tests: a good chain plus the usual ways of being wrong. */
export interface Pki {
  caCert: string;
  /** Signed by caCert for localhost (DNS:localhost, IP:127.0.0.1). */
  serverCert: string;
  serverKey: string;
  /** Signed by caCert, CN and SAN hv1.example.org, clientAuth. */
  clientCert: string;
  clientKey: string;
  /** Another certificate with the same name (hv1.example.org), signed by caCert: the same identity, other credentials. */
  twinClientCert: string;
  twinClientKey: string;
  /** A CA unrelated to caCert. */
  foreignCaCert: string;
  /** A client cert signed by foreignCaCert. */
  foreignClientCert: string;
  foreignClientKey: string;
  /** Signed by caCert, but only for other.example.org. */
  wrongNameServerCert: string;
  wrongNameServerKey: string;
  /** Signed by caCert, expired a day ago. */
  expiredClientCert: string;
  expiredClientKey: string;
  /** Signed by caCert for localhost, expiring in 10 days: inside the expiry warning's 30. */
  expiringServerCert: string;
  expiringServerKey: string;
  /** caCert's key and database, to revoke its certificates and write its CRL (revoke, writeCrl). */
  ca: Issuer;
  foreignCa: Issuer;
}

export interface Issuer {
  cert: string;
  key: string;
  /** `openssl ca` configuration naming this CA's database. */
  config: string;
}

interface LeafSpec {
  cn: string;
  san: string;
  usage: 'serverAuth' | 'clientAuth';
  notBefore: Date;
  notAfter: Date;
}

const HOUR_MS = 3600_000;
const DAY_MS = 24 * HOUR_MS;

/** Creates the PKI in `dir` with the openssl CLI. EC P-256 keys, key files mode 0600. */
export async function makePki(dir: string): Promise<Pki> {
  await mkdir(dir, { recursive: true });
  const now = Date.now();
  // Backdated an hour so small clock differences never make a fresh cert "not yet valid".
  const valid = { notBefore: new Date(now - HOUR_MS), notAfter: new Date(now + 365 * DAY_MS) };
  // Sequential: concurrent `openssl ca` runs would race on the CA's database file.
  const ca = await makeCa(dir, 'ca');
  const foreignCa = await makeCa(dir, 'foreign-ca');
  const client = { cn: 'hv1.example.org', san: 'DNS:hv1.example.org', usage: 'clientAuth' } as const;
  const server = await issue(dir, ca, 'server', { cn: 'localhost', san: 'DNS:localhost,IP:127.0.0.1', usage: 'serverAuth', ...valid });
  const wrongName = await issue(dir, ca, 'wrong-name-server', { cn: 'other.example.org', san: 'DNS:other.example.org', usage: 'serverAuth', ...valid });
  const expiring = await issue(dir, ca, 'expiring-server', { cn: 'localhost', san: 'DNS:localhost,IP:127.0.0.1', usage: 'serverAuth', notBefore: valid.notBefore, notAfter: new Date(now + 10 * DAY_MS) });
  const goodClient = await issue(dir, ca, 'client', { ...client, ...valid });
  const twinClient = await issue(dir, ca, 'twin-client', { ...client, ...valid });
  const foreignClient = await issue(dir, foreignCa, 'foreign-client', { ...client, ...valid });
  const expiredClient = await issue(dir, ca, 'expired-client', { ...client, notBefore: new Date(now - 30 * DAY_MS), notAfter: new Date(now - DAY_MS) });
  return {
    caCert: ca.cert,
    serverCert: server.cert,
    serverKey: server.key,
    clientCert: goodClient.cert,
    clientKey: goodClient.key,
    twinClientCert: twinClient.cert,
    twinClientKey: twinClient.key,
    foreignCaCert: foreignCa.cert,
    foreignClientCert: foreignClient.cert,
    foreignClientKey: foreignClient.key,
    wrongNameServerCert: wrongName.cert,
    wrongNameServerKey: wrongName.key,
    expiredClientCert: expiredClient.cert,
    expiredClientKey: expiredClient.key,
    expiringServerCert: expiring.cert,
    expiringServerKey: expiring.key,
    ca,
    foreignCa,
  };
}

/** Marks `cert` revoked in its issuer's database; the next writeCrl() lists it. */
export async function revoke(issuer: Issuer, cert: string): Promise<void> {
  await run('openssl', ['ca', '-config', issuer.config, '-cert', issuer.cert, '-keyfile', issuer.key, '-revoke', cert]);
}

/** Writes the issuer's CRL (PEM) to `out`: every certificate revoked so far, next update in `seconds`. */
export async function writeCrl(issuer: Issuer, out: string, seconds = 30 * DAY_MS / 1000): Promise<string> {
  await run('openssl', ['ca', '-config', issuer.config, '-cert', issuer.cert, '-keyfile', issuer.key, '-gencrl', '-crlsec', String(seconds), '-out', out]);
  return out;
}

async function makeKey(dir: string, name: string): Promise<string> {
  const key = join(dir, `${name}.key`);
  await run('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key]);
  await chmod(key, 0o600);
  return key;
}

/**
 * A self-signed CA with its own `openssl ca` database; leaves are issued with
 * `openssl ca` because, unlike `x509 -req` in OpenSSL 3.0, it takes explicit
 * validity dates, which the expired cert needs.
 */
async function makeCa(dir: string, name: string): Promise<Issuer> {
  const key = await makeKey(dir, name);
  const cert = join(dir, `${name}.pem`);
  const config = join(dir, `${name}.cnf`);
  const database = join(dir, `${name}.index`);
  const issued = join(dir, `${name}-issued`);
  await mkdir(issued);
  await writeFile(database, '');
  await writeFile(
    config,
    [
      '[req]',
      'distinguished_name = dn',
      '[dn]',
      '[ca_ext]',
      'basicConstraints = critical,CA:TRUE',
      'keyUsage = critical,keyCertSign,cRLSign',
      'subjectKeyIdentifier = hash',
      '[ca]',
      'default_ca = issuer',
      '[issuer]',
      `database = ${database}`,
      `new_certs_dir = ${issued}`,
      'rand_serial = yes',
      // Several leaves share a subject (hv1.example.org).
      'unique_subject = no',
      'default_md = sha256',
      'policy = policy_any',
      'email_in_dn = no',
      '[policy_any]',
      'commonName = supplied',
      '',
    ].join('\n'),
  );
  await run('openssl', ['req', '-x509', '-new', '-key', key, '-subj', `/CN=nbd-tunnel test ${name}`, '-days', '3650', '-config', config, '-extensions', 'ca_ext', '-out', cert]);
  return { cert, key, config };
}

async function issue(dir: string, issuer: Issuer, name: string, spec: LeafSpec): Promise<{ cert: string; key: string }> {
  const key = await makeKey(dir, name);
  const csr = join(dir, `${name}.csr`);
  const extfile = join(dir, `${name}.ext`);
  const cert = join(dir, `${name}.pem`);
  await writeFile(
    extfile,
    [
      'basicConstraints = critical,CA:FALSE',
      'keyUsage = critical,digitalSignature',
      `extendedKeyUsage = ${spec.usage}`,
      `subjectAltName = ${spec.san}`,
      'subjectKeyIdentifier = hash',
      'authorityKeyIdentifier = keyid',
      '',
    ].join('\n'),
  );
  await run('openssl', ['req', '-new', '-key', key, '-subj', `/CN=${spec.cn}`, '-config', issuer.config, '-out', csr]);
  await run('openssl', [
    'ca', '-batch', '-notext',
    '-config', issuer.config,
    '-cert', issuer.cert,
    '-keyfile', issuer.key,
    '-startdate', asn1Time(spec.notBefore),
    '-enddate', asn1Time(spec.notAfter),
    '-extfile', extfile,
    '-in', csr,
    '-out', cert,
  ]);
  return { cert, key };
}

/** GeneralizedTime as `openssl ca -startdate/-enddate` want it: YYYYMMDDHHMMSSZ. */
function asn1Time(date: Date): string {
  return `${date.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;
}
