// --crl FILE: the CRLs it holds, each checked at load against the --ca certificates, and the
// words for a certificate OpenSSL refused because of them.
import { X509Certificate } from 'node:crypto';
import { parseCrl, type Crl } from './crl.js';

const CRL_PEM = /-----BEGIN X509 CRL-----([^-]+)-----END X509 CRL-----/g;
const CERTIFICATE_PEM = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g;

interface IssuedCrl extends Crl {
  issuer: X509Certificate;
}

export class RevocationList {
  private constructor(
    /** The --crl file, named in messages. */
    readonly file: string,
    /** One PEM per CRL: Node's secure context reads only the first CRL of each entry. */
    readonly pems: string[],
    private readonly crls: IssuedCrl[],
  ) {}

  /**
   * Reads `text` (the file's contents); throws an Error saying what is wrong with it (no CRL,
   * a broken one, one no --ca certificate signed, one past its next update).
   */
  static load(file: string, text: string, caPem: Buffer, now = Date.now()): RevocationList {
    const blocks = [...text.matchAll(CRL_PEM)];
    if (blocks.length === 0) {
      throw new Error('not a PEM CRL: no "-----BEGIN X509 CRL-----" block (a DER CRL converts with: openssl crl -inform DER -in FILE -out FILE.pem)');
    }
    const cas = (caPem.toString('latin1').match(CERTIFICATE_PEM) ?? []).map((pem) => new X509Certificate(pem));
    const crls = blocks.map((block, i) => {
      const which = blocks.length > 1 ? `CRL ${i + 1} of ${blocks.length}` : 'the CRL';
      let crl: Crl;
      try {
        crl = parseCrl(Buffer.from(block[1]!, 'base64'));
      } catch (error) {
        throw new Error(`${which} is not a valid CRL: ${(error as Error).message}`);
      }
      let issuer: X509Certificate | undefined;
      try {
        issuer = cas.find((ca) => crl.signedBy(ca));
      } catch (error) {
        throw new Error(`${which}: ${(error as Error).message}`);
      }
      if (!issuer) {
        const names = cas.map((ca) => ca.subject.replaceAll('\n', ', ')).join('; ');
        throw new Error(`${which} is not signed by the --ca certificate (${names}): give the CRL that this CA publishes (openssl ca -gencrl with its key)`);
      }
      if (crl.nextUpdate && crl.nextUpdate.getTime() < now) {
        throw new Error(`${which} is out of date: its next update was due ${isoSeconds(crl.nextUpdate)}; fetch the current CRL from the CA`);
      }
      return { ...crl, issuer };
    });
    return new RevocationList(file, blocks.map((block) => block[0]), crls);
  }

  /**
   * Why OpenSSL refused `certificate` (absent when the handshake did not keep it) with `code`,
   * naming the serial and this file; undefined when the code is not about revocation.
   */
  explain(code: string | undefined, certificate: X509Certificate | undefined): string | undefined {
    const crl = certificate && this.crls.find((c) => certificate.checkIssued(c.issuer));
    switch (code) {
      case 'CERT_REVOKED': {
        if (!certificate) return `it is revoked by --crl ${this.file}`;
        const revokedAt = crl?.revoked.get(certificate.serialNumber);
        return `serial ${certificate.serialNumber} is revoked by --crl ${this.file}${revokedAt ? ` (revoked ${isoSeconds(revokedAt)})` : ''}`;
      }
      case 'CRL_HAS_EXPIRED': {
        const due = crl?.nextUpdate ? `: its issuer's CRL was due for an update at ${isoSeconds(crl.nextUpdate)}` : '';
        return `--crl ${this.file} is out of date${due}; fetch the current CRL from the CA and send SIGHUP (${code})`;
      }
      case 'UNABLE_TO_GET_CRL': {
        const issuer = certificate ? ` (${certificate.issuer.replaceAll('\n', ', ')})` : '';
        return `--crl ${this.file} holds no CRL from the CA that issued it${issuer}: add that CA's CRL to the file (${code})`;
      }
      default:
        return undefined;
    }
  }
}

/** 2026-12-01T12:53:05Z */
function isoSeconds(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}
