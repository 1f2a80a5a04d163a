// One X.509 CRL (RFC 5280, 5.1), read for what nbd-tunnel needs: who signed it, its dates and
// the serial numbers it revokes. Node has no CRL API; OpenSSL enforces the CRL in the TLS
// handshake, this only checks the file at start and names the serial in refusals.
import { verify, type X509Certificate } from 'node:crypto';
import { childrenOf, expect, isTime, readElement, readTime, TAG } from './der.js';

export interface Crl {
  thisUpdate: Date;
  nextUpdate: Date | undefined;
  /** Serial number (upper-case hex, as X509Certificate.serialNumber) → revocation date. */
  revoked: Map<string, Date>;
  /** Whether `ca`'s key made the signature. */
  signedBy(ca: X509Certificate): boolean;
}

/** Signature algorithms by the DER bytes of their OID, and the digest crypto.verify() takes (null: none, Ed25519). */
const DIGESTS: ReadonlyMap<string, string | null> = new Map([
  ['2a8648ce3d040302', 'sha256'], // ecdsa-with-SHA256
  ['2a8648ce3d040303', 'sha384'], // ecdsa-with-SHA384
  ['2a8648ce3d040304', 'sha512'], // ecdsa-with-SHA512
  ['2a864886f70d01010b', 'sha256'], // sha256WithRSAEncryption
  ['2a864886f70d01010c', 'sha384'], // sha384WithRSAEncryption
  ['2a864886f70d01010d', 'sha512'], // sha512WithRSAEncryption
  ['2b6570', null], // Ed25519
]);

export function parseCrl(der: Buffer): Crl {
  const list = expect(readElement(der, 0), TAG.sequence, 'CertificateList');
  if (list.end !== der.length) throw new Error('bytes after the CertificateList');
  const [tbs, algorithm, signature] = childrenOf(der, list);
  expect(tbs, TAG.sequence, 'tbsCertList');
  const oid = expect(childrenOf(der, expect(algorithm, TAG.sequence, 'signatureAlgorithm'))[0], TAG.oid, 'signature algorithm');
  const bits = expect(signature, TAG.bitString, 'signatureValue');
  const fields = childrenOf(der, tbs!);
  let at = fields[0]?.tag === TAG.integer ? 1 : 0; // version, present in v2 CRLs
  at += 2; // signature algorithm, issuer
  if (!isTime(fields[at])) throw new Error('tbsCertList: no thisUpdate');
  const thisUpdate = readTime(der, fields[at++]!);
  const nextUpdate = isTime(fields[at]) ? readTime(der, fields[at++]!) : undefined;
  const revoked = new Map<string, Date>();
  if (fields[at]?.tag === TAG.sequence) {
    for (const entry of childrenOf(der, fields[at]!)) {
      const [serial, date] = childrenOf(der, expect(entry, TAG.sequence, 'revoked certificate'));
      expect(serial, TAG.integer, 'revoked serial number');
      if (!isTime(date)) throw new Error('revoked certificate: no revocation date');
      revoked.set(serialHex(der.subarray(serial!.contentStart, serial!.end)), readTime(der, date!));
    }
  }
  const algorithmId = der.toString('hex', oid.contentStart, oid.end);
  const signed = der.subarray(tbs!.start, tbs!.end);
  const value = der.subarray(bits.contentStart + 1, bits.end); // past the unused-bits byte
  return {
    thisUpdate,
    nextUpdate,
    revoked,
    signedBy(ca) {
      const digest = DIGESTS.get(algorithmId);
      if (digest === undefined) throw new Error(`signature algorithm (OID bytes ${algorithmId}) not supported: sign CRLs with ECDSA, RSA PKCS#1 v1.5 (SHA-256 or better) or Ed25519`);
      try {
        return verify(digest, signed, ca.publicKey, value);
      } catch {
        return false; // a key of another type than the signature's
      }
    },
  };
}

/** A DER INTEGER's bytes as OpenSSL prints a serial: upper-case hex, no leading zero bytes. */
function serialHex(bytes: Buffer): string {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  return bytes.toString('hex', start).toUpperCase();
}
