import { execFile } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { IbsError } from '../core/index.ts';
import { writeFileAtomic } from '../lib/index.ts';

const run = promisify(execFile);
export const CERT_FILE = 'proxy.pem';
export const KEY_FILE = 'proxy.key';

export interface CertificateInfo {
  subject: string;
  issuer: string;
  notBefore: string;
  notAfter: string;
  fingerprint: string;
  san: string;
  path: string;
}

export function describeCertificate(pem: string | Buffer, path: string): CertificateInfo {
  const cert = new X509Certificate(pem);
  return {
    subject: cert.subject.replace(/\n/g, ', '),
    issuer: cert.issuer.replace(/\n/g, ', '),
    notBefore: new Date(cert.validFrom).toISOString(),
    notAfter: new Date(cert.validTo).toISOString(),
    fingerprint: cert.fingerprint256.toLowerCase(),
    san: cert.subjectAltName ?? '',
    path,
  };
}

/**
 * The server certificate and key (`proxy.pem`, `proxy.key` in the config directory), created self-signed at
 * first start: EC P-256, ten years, SANs for the host name, localhost and 127.0.0.1. Uses the openssl
 * program, because Node can read but not write X.509.
 */
export async function ensureCertificate(configDir: string): Promise<{ key: Buffer; cert: Buffer; info: CertificateInfo }> {
  const certPath = join(configDir, CERT_FILE);
  const keyPath = join(configDir, KEY_FILE);
  if (!(await stat(certPath).catch(() => undefined))) {
    await mkdir(configDir, { recursive: true });
    const host = hostname().split('.')[0] || 'localhost';
    const tmpKey = `${keyPath}.new`;
    const tmpCert = `${certPath}.new`;
    try {
      await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', tmpKey, '-out', tmpCert, '-days', '3650', '-subj', `/CN=${host}/O=ironcore-backup`, '-addext', `subjectAltName=DNS:${host},DNS:localhost,IP:127.0.0.1`]);
      await writeFileAtomic(keyPath, await readFile(tmpKey), { mode: 0o600 });
      await writeFileAtomic(certPath, await readFile(tmpCert));
    } catch (error) {
      throw new IbsError('UNAVAILABLE', `Cannot create the server certificate with openssl: ${(error as Error).message} (install the openssl package, or install one with "cert update")`, { cause: error });
    } finally {
      await rm(tmpKey, { force: true });
      await rm(tmpCert, { force: true });
    }
  }
  const [key, cert] = [await readFile(keyPath), await readFile(certPath)];
  // Checked here, so that a damaged pair stops the server with the files named and the way out, not with
  // an error of the TLS library.
  try {
    checkPair(cert, key, certPath, keyPath);
  } catch (error) {
    throw new IbsError(
      'CORRUPT',
      `${(error as Error).message}: install a certificate with "cert update --cert FILE --key FILE", or move ${CERT_FILE} and ${KEY_FILE} aside for a new self-signed pair at the next start (remotes that pinned the old fingerprint then need "remote update --name NAME --fingerprint …")`,
    );
  }
  return { key, cert, info: describeCertificate(cert, certPath) };
}

/** Checks that `cert` is a PEM certificate and `key` its PEM private key; the names say in errors where they came from. */
function checkPair(cert: Buffer, key: Buffer, certName: string, keyName: string): void {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch {
    throw new IbsError('INVALID_ARGUMENT', `${certName} is not a PEM certificate`);
  }
  let matches = false;
  try {
    matches = x509.checkPrivateKey(createPrivateKey(key));
  } catch {
    throw new IbsError('INVALID_ARGUMENT', `${keyName} is not a PEM private key`);
  }
  if (!matches) throw new IbsError('INVALID_ARGUMENT', `The key ${keyName} does not belong to the certificate ${certName}`);
}

export async function certificateInfo(configDir: string): Promise<CertificateInfo> {
  const path = join(configDir, CERT_FILE);
  const pem = await readFile(path).catch(() => {
    throw new IbsError('NOT_FOUND', `No server certificate at ${path}: it is created when the server first starts`);
  });
  try {
    return describeCertificate(pem, path);
  } catch {
    throw new IbsError('CORRUPT', `${path} is not a PEM certificate: install one with "cert update --cert FILE --key FILE"`);
  }
}

/** Installs an own certificate and key (say, from ACME) after checking that they belong together. */
export async function updateCertificate(configDir: string, input: { certFile: string; keyFile: string }): Promise<CertificateInfo> {
  const cert = await readFile(input.certFile).catch((e: Error) => {
    throw new IbsError('NOT_FOUND', `Cannot read certificate "${input.certFile}": ${e.message}`);
  });
  const key = await readFile(input.keyFile).catch((e: Error) => {
    throw new IbsError('NOT_FOUND', `Cannot read key "${input.keyFile}": ${e.message}`);
  });
  return installCertificate(configDir, { cert, key, certName: `"${input.certFile}"`, keyName: `"${input.keyFile}"` });
}

/**
 * Installs a PEM certificate and its private key (checked to be a pair) as the server's; the server uses them
 * from its next start. `certName` / `keyName` say in errors where they came from.
 */
export async function installCertificate(configDir: string, input: { cert: Buffer; key: Buffer; certName?: string; keyName?: string }): Promise<CertificateInfo> {
  const { cert, key } = input;
  checkPair(cert, key, input.certName ?? 'the certificate', input.keyName ?? 'the key');
  await mkdir(configDir, { recursive: true });
  await writeFileAtomic(join(configDir, KEY_FILE), key, { mode: 0o600 });
  await writeFileAtomic(join(configDir, CERT_FILE), cert);
  return describeCertificate(cert, join(configDir, CERT_FILE));
}
