import { createHmac, randomBytes, scrypt as scryptCb, timingSafeEqual } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { IbsError, parseAclPath, parseAuthId, parseRole, parseUserId, type AclEntry } from '../core/index.ts';
import { readTextCached, writeFileAtomic } from '../lib/index.ts';
import { SectionConfig, acquireLock, type Section } from './section-config.ts';

/**
 * Users, API tokens and the ACL, in the config directory:
 * - `user.cfg`: sections `user: NAME@REALM` and `token: NAME@REALM!TOKEN` (enable, expire, comment, email);
 * - `shadow.json` (0600): scrypt hashes of user passwords;
 * - `token.shadow` (0600): salted HMAC-SHA-256 of token secrets (random 256-bit secrets need no slow hash,
 *   and every API request checks one);
 * - `acl.cfg`: lines `acl:PROPAGATE:PATH:AUTHID:ROLE`.
 * Secrets are shown once at creation and never stored or returned in clear.
 */

export interface UserRecord {
  userid: string;
  enable: boolean;
  /** Seconds since the epoch; 0 = never. */
  expire: number;
  comment?: string;
  email?: string;
  /** A stored enable or expire that does not read (edited by hand): the account is refused until corrected. */
  problem?: string;
}

export interface TokenRecord {
  tokenid: string;
  enable: boolean;
  expire: number;
  comment?: string;
  problem?: string;
}

const SCRYPT = { N: 1 << 14, r: 8, p: 1 };

function scrypt(password: string, salt: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => scryptCb(password.normalize('NFC'), salt, 32, { ...SCRYPT, maxmem: 64 * 1024 * 1024 }, (e, k) => (e ? reject(e) : resolve(k))));
}

function singleLine(value: string | undefined, what: string): string | undefined {
  if (value !== undefined && (/[\r\n]/.test(value) || value.length > 1024)) throw new IbsError('INVALID_ARGUMENT', `Invalid ${what}: expected one line of at most 1024 characters`);
  return value;
}

export class AccessConfig {
  readonly #dir: string;
  readonly #users: SectionConfig;

  constructor(configDir: string) {
    this.#dir = configDir;
    this.#users = new SectionConfig(join(configDir, 'user.cfg'));
  }

  // ---- users ---------------------------------------------------------------------------------------------

  async users(): Promise<UserRecord[]> {
    return usersIn((await this.#users.read()).sections);
  }

  async user(userid: string): Promise<UserRecord> {
    const found = (await this.users()).find((u) => u.userid === userid);
    if (!found) throw new IbsError('NOT_FOUND', `User "${userid}" does not exist`);
    return found;
  }

  async createUser(input: { userid: string; password?: string | undefined; comment?: string; email?: string; expire?: number }): Promise<UserRecord> {
    parseUserId(input.userid);
    singleLine(input.comment, 'comment');
    singleLine(input.email, 'email');
    if (input.password !== undefined && input.password.length < 8) throw new IbsError('INVALID_ARGUMENT', `The password is ${input.password.length} characters long: expected at least 8`);
    const record: UserRecord = { userid: input.userid, enable: true, expire: input.expire ?? 0, ...(input.comment ? { comment: input.comment } : {}), ...(input.email ? { email: input.email } : {}) };
    await this.#users.update((sections) => {
      if (sections.some((s) => s.type === 'user' && s.name === input.userid)) throw new IbsError('EXISTS', `User "${input.userid}" already exists`);
      sections.push(fromUser(record));
    });
    if (input.password !== undefined) await this.setPassword(input.userid, input.password);
    return record;
  }

  async updateUser(userid: string, change: { enable?: boolean; expire?: number; comment?: string; email?: string }): Promise<UserRecord> {
    singleLine(change.comment, 'comment');
    singleLine(change.email, 'email');
    return this.#users.update((sections) => {
      const i = sections.findIndex((s) => s.type === 'user' && s.name === userid);
      if (i < 0) throw new IbsError('NOT_FOUND', `User "${userid}" does not exist`);
      // A setting stored in a form that does not read is corrected only by giving it.
      const missing = unreadable(sections[i] as Section).filter((b) => change[b.field] === undefined);
      if (missing.length > 0) {
        throw new IbsError('INVALID_ARGUMENT', `User "${userid}" has ${missing.map((b) => b.text).join(' and ')} stored: give ${missing.map((b) => (b.field === 'enable' ? '--enable or --disable' : '--expire')).join(' and ')} to correct it`);
      }
      const { problem: _fixed, ...stored } = toUser(sections[i] as Section);
      const next = { ...stored, ...Object.fromEntries(Object.entries(change).filter(([, v]) => v !== undefined)) } as UserRecord;
      sections[i] = fromUser(next);
      return next;
    });
  }

  /** Removes a user with its tokens, their secrets and every ACL entry naming them. */
  async removeUser(userid: string): Promise<void> {
    await this.#users.update((sections) => {
      if (!sections.some((s) => s.type === 'user' && s.name === userid)) throw new IbsError('NOT_FOUND', `User "${userid}" does not exist`);
      for (let i = sections.length - 1; i >= 0; i--) {
        const s = sections[i] as Section;
        if ((s.type === 'user' && s.name === userid) || (s.type === 'token' && s.name.startsWith(`${userid}!`))) sections.splice(i, 1);
      }
    });
    await this.#updateSecrets('shadow.json', (m) => delete m[userid]);
    await this.#updateSecrets('token.shadow', (m) => {
      for (const k of Object.keys(m)) if (k.startsWith(`${userid}!`)) delete m[k];
    });
    await this.#updateAcl((entries) => entries.filter((e) => parseAuthId(e.authId).user !== userid));
  }

  async setPassword(userid: string, password: string): Promise<void> {
    if (password.length < 8) throw new IbsError('INVALID_ARGUMENT', `The password is ${password.length} characters long: expected at least 8`);
    await this.user(userid);
    const salt = randomBytes(16);
    const hash = await scrypt(password, salt);
    await this.#updateSecrets('shadow.json', (m) => {
      m[userid] = `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString('base64')}$${hash.toString('base64')}`;
    });
  }

  /** True when the user exists, is enabled and not expired. */
  async userActive(userid: string): Promise<boolean> {
    const user = (await this.users()).find((u) => u.userid === userid);
    return user !== undefined && active(user);
  }

  /** True when the user exists, is enabled, not expired, and the password matches. */
  async verifyPassword(userid: string, password: string): Promise<boolean> {
    const user = (await this.users()).find((u) => u.userid === userid);
    const stored = (await this.#readSecrets('shadow.json'))[userid];
    if (!user || !active(user) || typeof stored !== 'string') return false;
    const [, , , , salt, hash] = stored.split('$');
    const actual = await scrypt(password, Buffer.from(salt ?? '', 'base64'));
    const expected = Buffer.from(hash ?? '', 'base64');
    return expected.length === actual.length && timingSafeEqual(actual, expected);
  }

  // ---- tokens --------------------------------------------------------------------------------------------

  async tokens(userid?: string): Promise<TokenRecord[]> {
    return tokensIn((await this.#users.read()).sections, userid);
  }

  /** Creates an API token; returns its secret, which is shown this once and stored only as a hash. */
  async createToken(input: { tokenid: string; comment?: string; expire?: number }): Promise<{ tokenid: string; secret: string }> {
    const { user, token } = parseAuthId(input.tokenid);
    if (token === undefined) throw new IbsError('INVALID_ARGUMENT', `Invalid token id "${input.tokenid}": expected user@realm!tokenname`);
    singleLine(input.comment, 'comment');
    await this.user(user);
    const record: TokenRecord = { tokenid: input.tokenid, enable: true, expire: input.expire ?? 0, ...(input.comment ? { comment: input.comment } : {}) };
    await this.#users.update((sections) => {
      if (sections.some((s) => s.type === 'token' && s.name === input.tokenid)) throw new IbsError('EXISTS', `Token "${input.tokenid}" already exists`);
      sections.push({ type: 'token', name: record.tokenid, props: { enable: '1', expire: String(record.expire), ...(record.comment ? { comment: record.comment } : {}) } });
    });
    const secret = randomBytes(32).toString('base64url');
    const salt = randomBytes(16);
    await this.#updateSecrets('token.shadow', (m) => {
      m[input.tokenid] = `hmac$${salt.toString('base64')}$${createHmac('sha256', salt).update(secret).digest('base64')}`;
    });
    return { tokenid: input.tokenid, secret };
  }

  async removeToken(tokenid: string): Promise<void> {
    await this.#users.update((sections) => {
      const i = sections.findIndex((s) => s.type === 'token' && s.name === tokenid);
      if (i < 0) throw new IbsError('NOT_FOUND', `Token "${tokenid}" does not exist`);
      sections.splice(i, 1);
    });
    await this.#updateSecrets('token.shadow', (m) => delete m[tokenid]);
    await this.#updateAcl((entries) => entries.filter((e) => e.authId !== tokenid));
  }

  /** True when the token and its user exist, are enabled, not expired, and the secret matches. */
  async verifyToken(tokenid: string, secret: string): Promise<boolean> {
    let user: string;
    try {
      user = parseAuthId(tokenid).user;
    } catch {
      return false;
    }
    // Asked on every API request: the user file (tokens and users both) is read once.
    const [{ sections }, secrets] = await Promise.all([this.#users.read(), this.#readSecrets('token.shadow')]);
    const stored = secrets[tokenid];
    const token = tokensIn(sections, user).find((t) => t.tokenid === tokenid);
    const owner = usersIn(sections).find((u) => u.userid === user);
    if (!token || !owner || !active(token) || !active(owner) || typeof stored !== 'string') return false;
    const [, salt, hash] = stored.split('$');
    const actual = createHmac('sha256', Buffer.from(salt ?? '', 'base64')).update(secret).digest();
    const expected = Buffer.from(hash ?? '', 'base64');
    return actual.length === expected.length && timingSafeEqual(actual, expected);
  }

  // ---- ACL -----------------------------------------------------------------------------------------------

  /** The ACL as it is now (read again only when the file changed); `fresh`: from the file, for an update under its lock. */
  async acl(fresh = false): Promise<AclEntry[]> {
    let text = '';
    try {
      const path = join(this.#dir, 'acl.cfg');
      text = await readTextCached(path, { fresh });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    // Numbered as in the file (blank and comment lines count), so that the error points at the line.
    return text
      .split('\n')
      .map((line, i) => ({ line, number: i + 1 }))
      .filter(({ line }) => line.trim() !== '' && !line.startsWith('#'))
      .map(({ line, number }) => {
        const m = /^acl:([01]):([^:]+):([^:]+):([A-Za-z]+)$/.exec(line.trim());
        if (!m) throw new IbsError('CORRUPT', `acl.cfg:${number}: cannot parse ${JSON.stringify(line)}: expected acl:PROPAGATE:PATH:AUTHID:ROLE`);
        return { propagate: m[1] === '1', path: m[2] as string, authId: m[3] as string, role: m[4] as string };
      });
  }

  /** Grants `role` on `path` (replacing that auth id's role there), or with `remove` takes it away. */
  async updateAcl(input: { path: string; authId: string; role: string; propagate?: boolean; remove?: boolean }): Promise<AclEntry[]> {
    const path = parseAclPath(input.path);
    const { user, token } = parseAuthId(input.authId);
    parseRole(input.role);
    if (!input.remove) {
      if (token === undefined) await this.user(user);
      else if (!(await this.tokens(user)).some((t) => t.tokenid === input.authId)) throw new IbsError('NOT_FOUND', `Token "${input.authId}" does not exist`);
    }
    return this.#updateAcl((entries) => {
      const rest = entries.filter((e) => !(e.path === path && e.authId === input.authId && (input.remove ? e.role === input.role : true)));
      if (input.remove) {
        if (rest.length === entries.length) throw new IbsError('NOT_FOUND', `No ACL entry for ${input.authId} with role ${input.role} on ${path}`);
        return rest;
      }
      return [...rest, { path, authId: input.authId, role: input.role, propagate: input.propagate ?? true }];
    });
  }

  async #updateAcl(change: (entries: AclEntry[]) => AclEntry[]): Promise<AclEntry[]> {
    const path = join(this.#dir, 'acl.cfg');
    await mkdir(dirname(path), { recursive: true });
    const release = await acquireLock(`${path}.lock`);
    try {
      const next = change(await this.acl(true));
      await writeFileAtomic(path, next.map((e) => `acl:${e.propagate ? 1 : 0}:${e.path}:${e.authId}:${e.role}\n`).join(''));
      return next;
    } finally {
      await release();
    }
  }

  // ---- secrets -------------------------------------------------------------------------------------------

  /** A secrets file: as it is now (read again only when it changed), or `fresh` from the file under its lock. */
  async #readSecrets(file: string, fresh = false): Promise<Record<string, unknown>> {
    const path = join(this.#dir, file);
    try {
      return JSON.parse(await readTextCached(path, { fresh })) as Record<string, unknown>;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw new IbsError('CORRUPT', `Cannot read ${join(this.#dir, file)}: ${(error as Error).message}`);
    }
  }

  async #updateSecrets(file: string, change: (m: Record<string, unknown>) => void): Promise<void> {
    const path = join(this.#dir, file);
    await mkdir(this.#dir, { recursive: true });
    const release = await acquireLock(`${path}.lock`);
    try {
      const m = await this.#readSecrets(file, true);
      change(m);
      await writeFileAtomic(path, `${JSON.stringify(m, null, 1)}\n`, { mode: 0o600 });
    } finally {
      await release();
    }
  }
}

function active(r: { enable: boolean; expire: number; problem?: string }): boolean {
  return r.problem === undefined && r.enable && (r.expire === 0 || r.expire > Date.now() / 1000);
}

function usersIn(sections: readonly Section[]): UserRecord[] {
  return sections.filter((s) => s.type === 'user').map(toUser);
}

/** The tokens of `userid` (all tokens when undefined). */
function tokensIn(sections: readonly Section[], userid?: string): TokenRecord[] {
  return sections.filter((s) => s.type === 'token' && (userid === undefined || s.name.startsWith(`${userid}!`))).map(toToken);
}

/** The settings of an account (user or token) that are stored in a form that does not read, with what was expected. */
function unreadable(s: Section): Array<{ field: 'enable' | 'expire'; text: string }> {
  const out: Array<{ field: 'enable' | 'expire'; text: string }> = [];
  const { enable, expire } = s.props;
  if (enable !== undefined && enable !== '0' && enable !== '1') out.push({ field: 'enable', text: `enable "${enable}" (expected 1 or 0)` });
  if (expire !== undefined && expire !== '' && !/^\d{1,12}$/.test(expire)) out.push({ field: 'expire', text: `expire "${expire}" (expected seconds since the epoch, 0 for never)` });
  return out;
}

/**
 * An account's enable and expire as stored. A value that does not read (edited by hand) fails closed: the
 * account is refused (see `active`) and the problem is named; it used to read as enabled and never expiring.
 */
function accountState(s: Section): { enable: boolean; expire: number; problem?: string } {
  const bad = unreadable(s);
  const enable = s.props.enable !== '0';
  const expire = bad.some((b) => b.field === 'expire') ? 0 : Number(s.props.expire || 0);
  const how = s.type === 'user' ? `user update ${s.name} with --enable or --disable and --expire` : 'remove the token and create it again';
  return { enable, expire, ...(bad.length ? { problem: `user.cfg, ${s.type} ${s.name}: invalid ${bad.map((b) => b.text).join(' and ')}; refused until corrected (${how}, or edit the file)` } : {}) };
}

function toUser(s: Section): UserRecord {
  return {
    userid: s.name,
    ...accountState(s),
    ...(s.props.comment ? { comment: s.props.comment } : {}),
    ...(s.props.email ? { email: s.props.email } : {}),
  };
}

function fromUser(u: UserRecord): Section {
  return { type: 'user', name: u.userid, props: { enable: u.enable ? '1' : '0', expire: String(u.expire), ...(u.comment ? { comment: u.comment } : {}), ...(u.email ? { email: u.email } : {}) } };
}

function toToken(s: Section): TokenRecord {
  return { tokenid: s.name, ...accountState(s), ...(s.props.comment ? { comment: s.props.comment } : {}) };
}
