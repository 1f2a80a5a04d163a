// When this side's certificate and its CA stop being valid: a gauge for monitoring, and a
// warning at start and once a day while either has less than WARN_DAYS left, so an expiry is
// seen in the logs weeks before migrations start failing.
import { X509Certificate } from 'node:crypto';
import type { Logger } from './log.js';

const WARN_DAYS = 30;
const DAY_MS = 24 * 60 * 60 * 1000;

export type CertificateRole = 'own' | 'ca';

/** Seconds until each certificate's notAfter (negative once expired). */
export type ExpiryReading = () => Record<CertificateRole, number>;

export interface ExpiryWatch {
  readonly seconds: ExpiryReading;
  /** New files after SIGHUP: measured from now on, and warned about at once if close. */
  update(tls: { cert: Buffer; ca: Buffer }): void;
  stop(): void;
}

function notAfter(pem: Buffer): number {
  return Date.parse(new X509Certificate(pem).validTo);
}

export function watchCertificateExpiry(tls: { cert: Buffer; ca: Buffer }, log: Logger): ExpiryWatch {
  let ends: Record<CertificateRole, number> = { own: notAfter(tls.cert), ca: notAfter(tls.ca) };
  const warn = (): void => {
    for (const which of ['own', 'ca'] as const) {
      const daysLeft = (ends[which] - Date.now()) / DAY_MS;
      if (daysLeft >= WARN_DAYS) continue;
      const what = which === 'own' ? 'this side\'s certificate (--cert)' : 'the CA certificate (--ca)';
      log.warn({ which, notAfter: new Date(ends[which]).toISOString(), daysLeft: Math.floor(daysLeft) }, `${what} expires in less than ${WARN_DAYS} days: renew it and send SIGHUP`);
    }
  };
  warn();
  const daily = setInterval(warn, DAY_MS);
  daily.unref();
  return {
    seconds: () => ({ own: (ends.own - Date.now()) / 1000, ca: (ends.ca - Date.now()) / 1000 }),
    update(next) {
      ends = { own: notAfter(next.cert), ca: notAfter(next.ca) };
      warn();
    },
    stop: () => clearInterval(daily),
  };
}
