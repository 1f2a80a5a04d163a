// Certificates as check prints them: the names an operator compares with --connect and --allow.
import { X509Certificate } from 'node:crypto';

const DAY_MS = 24 * 60 * 60 * 1000;

/** "CN=localhost" or "O=Example, CN=hv1.example.org": the subject on one line. */
export function subjectLine(certificate: X509Certificate): string {
  return certificate.subject.split('\n').join(', ');
}

/** The subject's CN, the name the destination's --allow rules usually give. */
export function commonName(certificate: X509Certificate): string | undefined {
  return certificate.subject.split('\n').find((part) => part.startsWith('CN='))?.slice('CN='.length);
}

/** Subject, alternative names, issuer, and when it stops being valid. */
export function describeCertificate(certificate: X509Certificate, now = Date.now()): string {
  const names = certificate.subjectAltName ? ` (${certificate.subjectAltName})` : '';
  const until = new Date(Date.parse(certificate.validTo));
  const daysLeft = Math.floor((until.getTime() - now) / DAY_MS);
  const date = `${until.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
  return `${subjectLine(certificate)}${names}, issued by ${certificate.issuer.split('\n').join(', ')}, valid until ${date} (${daysLeft} days left)`;
}
