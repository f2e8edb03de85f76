'use strict';
// A local Azure Service Bus peer for Herald's tests: the AMQP 1.0 side of a
// Service Bus namespace, built on rhea (the AMQP library Azure's own
// JavaScript SDK uses), so that the real azservicebus and @azure/service-bus
// clients run unchanged against it. README.md next to this file says what it
// implements and what it does not; .ci/servicebus.sh starts it.
//
// Everything lives in memory and is lost on restart, like the emulator's
// in-memory mode. One process serves one namespace.

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const rhea = require('rhea');
const rheaMessage = require('rhea/lib/message.js');
const terminus = require('rhea/lib/terminus.js');

const types = rhea.types;

// The bare message (properties, application properties, body) is immutable
// on its way through a broker (AMQP 1.0 section 3.2), and rhea decodes it
// into untyped JavaScript values: a long would come back an int, a symbol a
// string. So every decoded message keeps the bytes it came from, and the
// peer forwards those, re-encoding only the sections a broker owns.
const decode = rheaMessage.decode;
rheaMessage.decode = function (buffer) {
  const msg = decode(buffer);
  Object.defineProperty(msg, 'raw', { value: Buffer.from(buffer), enumerable: false });
  return msg;
};

const BATCH_FORMAT = 0x80013700;
const DESCRIPTOR = { header: 0x70, deliveryAnnotations: 0x71, messageAnnotations: 0x72, footer: 0x78 };
const SESSION_FILTER = 'com.microsoft:session-filter';
const TICKS_AT_EPOCH = 621355968000000000n; // .NET ticks at 1970-01-01
const COND = {
  notFound: 'amqp:not-found',
  notAllowed: 'amqp:not-allowed',
  unauthorized: 'amqp:unauthorized-access',
  sizeExceeded: 'amqp:link:message-size-exceeded',
  lockLost: 'com.microsoft:message-lock-lost',
  sessionLockLost: 'com.microsoft:session-lock-lost',
  sessionCannotBeLocked: 'com.microsoft:session-cannot-be-locked',
  timeout: 'com.microsoft:timeout',
  notImplemented: 'amqp:not-implemented',
};

// ---------------------------------------------------------------- config

function parseDuration(s, key) {
  if (typeof s === 'number') return s * 1000;
  const m = /^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$/.exec(String(s));
  if (!m) throw new Error(`${key}: ${JSON.stringify(s)} is not an ISO 8601 duration such as PT30S`);
  const [, d = 0, h = 0, min = 0, sec = 0] = m;
  return ((Number(d) * 24 + Number(h)) * 60 + Number(min)) * 60000 + Number(sec) * 1000;
}

// Defaults are the ones Azure gives an entity created without settings.
function entityProps(p, key) {
  p = p || {};
  return {
    lockDurationMs: parseDuration(p.LockDuration || 'PT1M', key + '.LockDuration'),
    maxDeliveryCount: p.MaxDeliveryCount || 10,
    requiresSession: Boolean(p.RequiresSession),
    requiresDuplicateDetection: Boolean(p.RequiresDuplicateDetection),
    duplicateWindowMs: parseDuration(p.DuplicateDetectionHistoryTimeWindow || 'PT10M', key + '.DuplicateDetectionHistoryTimeWindow'),
    maxMessageBytes: (p.MaxMessageSizeInKilobytes || 256) * 1024,
  };
}

function loadConfig(file) {
  const doc = JSON.parse(fs.readFileSync(file, 'utf8'));
  const ns = ((doc.UserConfig || {}).Namespaces || [])[0];
  if (!ns) throw new Error(`${file}: UserConfig.Namespaces[0] is missing`);
  const queues = (ns.Queues || []).map((q, i) => ({ name: q.Name, props: entityProps(q.Properties, `Queues[${i}]`) }));
  const topics = (ns.Topics || []).map((t, i) => ({
    name: t.Name,
    props: entityProps(t.Properties, `Topics[${i}]`),
    subscriptions: (t.Subscriptions || []).map((s, j) => ({
      name: s.Name,
      props: entityProps(s.Properties, `Topics[${i}].Subscriptions[${j}]`),
      rules: (s.Rules || []).map((r) => correlationRule(r, `Topics[${i}].Subscriptions[${j}].Rules`)),
    })),
  }));
  return {
    keyName: ns.SharedAccessKeyName || 'RootManageSharedAccessKey',
    key: ns.SharedAccessKey || 'SAS_KEY_VALUE',
    queues,
    topics,
  };
}

// Only correlation filters: each field set must equal the message's.
function correlationRule(rule, key) {
  const p = rule.Properties || {};
  if (p.FilterType && p.FilterType !== 'Correlation') {
    throw new Error(`${key}: only FilterType Correlation is implemented, got ${p.FilterType}`);
  }
  return p.CorrelationFilter || {};
}

function ruleMatches(rule, msg) {
  const props = msg.properties;
  const fields = {
    Label: props.subject, Subject: props.subject, To: props.to, ReplyTo: props.reply_to,
    MessageId: props.message_id, CorrelationId: props.correlation_id, ContentType: props.content_type,
    SessionId: props.group_id, ReplyToSessionId: props.reply_to_group_id,
  };
  for (const [k, want] of Object.entries(rule)) {
    if (k === 'Properties') {
      for (const [pk, pv] of Object.entries(want || {})) {
        if ((msg.application_properties || {})[pk] !== pv) return false;
      }
    } else if (!(k in fields)) {
      throw new Error(`correlation filter field ${k} is not implemented`);
    } else if (fields[k] !== want) {
      return false;
    }
  }
  return true;
}

// A name with '*' is a pattern: every name it matches is an entity with its
// settings, created on first use, so each test can take a fresh one.
function globToRegExp(glob) {
  const escaped = glob.toLowerCase().split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&'));
  return new RegExp('^' + escaped.join('[^/]*') + '$');
}

// ---------------------------------------------------------------- messages

function typedTimestamp(ms) { return types.wrap_timestamp(ms); }

function typedLong(n) {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(BigInt(n));
  return types.wrap_long(b);
}

function dotnetTicks(ms) { return typedLong(BigInt(ms) * 10000n + TICKS_AT_EPOCH); }

// splitSections returns the encoded sections of an AMQP message by kind: the
// broker-owned ones decoded, the bare message as the bytes it arrived in.
function splitSections(raw) {
  const reader = new types.Reader(raw);
  const out = { messageAnnotations: [], bare: [], footer: null };
  while (reader.remaining()) {
    const start = reader.position;
    const section = reader.read();
    const code = Number(section.descriptor && section.descriptor.value);
    const bytes = raw.subarray(start, reader.position);
    if (code === DESCRIPTOR.messageAnnotations) {
      out.messageAnnotations = section.value;
    } else if (code === DESCRIPTOR.footer) {
      out.footer = bytes;
    } else if (code !== DESCRIPTOR.header && code !== DESCRIPTOR.deliveryAnnotations) {
      out.bare.push(bytes);
    }
  }
  return out;
}

function encodeSection(code, typed) {
  const w = new types.Writer();
  w.write(types.described(types.wrap_ulong(code), typed));
  return w.toBuffer();
}

// stored is one message in an entity: the sections it arrived with, the
// fields the peer looks at, and its broker state.
function storedMessage(raw, decoded) {
  const props = decoded.properties = {
    message_id: decoded.message_id, subject: decoded.subject, to: decoded.to, reply_to: decoded.reply_to,
    correlation_id: decoded.correlation_id, content_type: decoded.content_type, group_id: decoded.group_id,
    reply_to_group_id: decoded.reply_to_group_id,
  };
  return {
    sections: splitSections(raw),
    properties: props,
    application_properties: decoded.application_properties || {},
    messageId: props.message_id === undefined ? undefined : String(props.message_id),
    sessionId: props.group_id,
    header: { durable: decoded.durable, priority: decoded.priority, ttl: decoded.ttl },
    size: raw.length,
  };
}

function copyForEntity(m) {
  return { ...m, extraAnnotations: {}, extraProperties: {} };
}

// encodeDelivery is the message as the peer hands it to a receiver: its own
// header and annotations around the bare message it was sent with.
function encodeDelivery(entry, lockToken) {
  const m = entry.msg;
  const header = new types.Writer();
  header.write(rheaMessage.header({ ...m.header, delivery_count: entry.deliveryCount }).described());
  const parts = [header.toBuffer()];
  if (lockToken) {
    parts.push(encodeSection(DESCRIPTOR.deliveryAnnotations,
      types.wrap_map({ 'x-opt-lock-token': types.wrap_uuid(lockToken) }, types.wrap_symbol)));
  }
  const ours = {
    'x-opt-sequence-number': typedLong(entry.seq),
    'x-opt-enqueued-time': typedTimestamp(entry.enqueuedAt),
  };
  if (entry.lockedUntil) ours['x-opt-locked-until'] = typedTimestamp(entry.lockedUntil);
  if (entry.deadLetterSource) ours['x-opt-deadletter-source'] = types.wrap_string(entry.deadLetterSource);
  const items = [];
  const old = m.sections.messageAnnotations;
  for (let i = 0; i + 1 < old.length; i += 2) {
    if (!(String(old[i].value) in ours)) items.push(old[i], old[i + 1]);
  }
  for (const [k, v] of Object.entries(ours)) items.push(types.wrap_symbol(k), v);
  parts.push(encodeSection(DESCRIPTOR.messageAnnotations, types.Map32(items)));
  // Dead-lettering and abandon with properties-to-modify change the
  // application properties, the one part of the bare message Service Bus
  // rewrites; the other bare sections are kept as they came. Sections are
  // described by a small ulong (0x00 0x53 code), as both SDKs write them.
  let override = entry.applicationPropertiesOverride;
  for (const b of m.sections.bare) {
    const code = b.length > 2 && b[1] === 0x53 ? b[2] : -1;
    if (override && code === 0x74) continue;
    if (override && code >= 0x75) {
      parts.push(encodeSection(0x74, types.wrap_map(override)));
      override = null;
    }
    parts.push(b);
  }
  if (override) parts.push(encodeSection(0x74, types.wrap_map(override)));
  if (m.sections.footer) parts.push(m.sections.footer);
  return Buffer.concat(parts);
}

// ---------------------------------------------------------------- entities

class Store {
  // A queue, a subscription or a dead-letter queue: what receivers read.
  constructor(peer, name, props, deadLetterOf) {
    this.peer = peer;
    this.name = name;
    this.props = props;
    this.deadLetterOf = deadLetterOf || null;
    this.available = []; // entries, in sequence order
    this.locked = new Map(); // lock token hex -> entry
    this.sessionLocks = new Map(); // session id -> consumer
    this.consumers = new Set();
    this.waitingForSession = [];
    this.seq = 0;
    this.dlq = deadLetterOf ? null : new Store(peer, name + '/$deadletterqueue',
      { ...props, requiresSession: false, maxDeliveryCount: Infinity }, this);
  }

  enqueue(msg, extra) {
    const entry = {
      msg, seq: ++this.seq, enqueuedAt: Date.now(), deliveryCount: 0, lockedUntil: 0,
      deadLetterSource: null, applicationPropertiesOverride: null, ...extra,
    };
    this.available.push(entry);
    this.pump();
  }

  deadLetter(entry, reason, description, extraProps) {
    const appProps = { ...(entry.applicationPropertiesOverride || entry.msg.application_properties),
      ...(extraProps || {}), DeadLetterReason: reason, DeadLetterErrorDescription: description };
    this.dlq.enqueue(entry.msg, {
      deliveryCount: entry.deliveryCount, deadLetterSource: this.name, applicationPropertiesOverride: appProps,
    });
  }

  // release puts a locked entry back, counting the delivery (abandon, lock
  // expiry) and dead-lettering it past MaxDeliveryCount as Service Bus does.
  release(entry, countDelivery, propertiesToModify, settleTransfer) {
    this.unlock(entry, settleTransfer);
    if (propertiesToModify && Object.keys(propertiesToModify).length) {
      entry.applicationPropertiesOverride = { ...(entry.applicationPropertiesOverride || entry.msg.application_properties),
        ...propertiesToModify };
    }
    if (countDelivery) entry.deliveryCount++;
    if (entry.deliveryCount >= this.props.maxDeliveryCount) {
      this.deadLetter(entry, 'MaxDeliveryCountExceeded',
        `Message could not be consumed after ${this.props.maxDeliveryCount} delivery attempts.`);
    } else {
      const at = this.available.findIndex((e) => e.seq > entry.seq);
      this.available.splice(at < 0 ? this.available.length : at, 0, entry);
    }
    this.pump();
  }

  // unlock drops the lock. The transfer that carried the message is settled
  // here only for a settlement made on $management; after a lock expiry it
  // stays open, so that the client's late disposition is answered lock-lost.
  unlock(entry, settleTransfer) {
    this.locked.delete(entry.lockHex);
    if (settleTransfer && entry.delivery) settleLocally(entry.delivery);
    entry.lockHex = null;
    entry.delivery = null;
    entry.consumer = null;
    entry.lockedUntil = 0;
  }

  expireLocks(now) {
    for (const entry of [...this.locked.values()]) {
      if (entry.lockedUntil <= now) this.release(entry, true);
    }
    for (const [id, c] of [...this.sessionLocks]) {
      if (c.sessionLockedUntil <= now) {
        this.sessionLocks.delete(id);
        c.lostSession = true;
        c.link.close({ condition: COND.sessionLockLost, description: `The session lock on ${id} has expired.` });
      }
    }
  }

  // freeSession returns the session id of the oldest message whose session
  // no receiver holds, or undefined.
  freeSession() {
    for (const e of this.available) {
      if (e.msg.sessionId !== undefined && !this.sessionLocks.has(e.msg.sessionId)) return e.msg.sessionId;
    }
    return undefined;
  }

  pump() {
    while (this.waitingForSession.length) {
      const id = this.freeSession();
      if (id === undefined) break;
      const w = this.waitingForSession.shift();
      clearTimeout(w.timer);
      w.grant(id);
    }
    for (const c of this.consumers) c.pump();
  }
}

class Queue {
  constructor(peer, name, props) {
    this.kind = 'queue';
    this.name = name;
    this.props = props;
    this.store = new Store(peer, name, props);
    this.seen = new Map(); // message id -> time first seen
  }

  targets() { return [this.store]; }
}

class Topic {
  constructor(peer, name, props, subscriptions) {
    this.kind = 'topic';
    this.name = name;
    this.props = props;
    this.seen = new Map();
    this.subscriptions = new Map(subscriptions.map((s) => [s.name.toLowerCase(),
      { store: new Store(peer, `${name}/subscriptions/${s.name}`, s.props), rules: s.rules }]));
  }

  targets(msg) {
    const out = [];
    for (const s of this.subscriptions.values()) {
      if (!s.rules.length || s.rules.some((r) => ruleMatches(r, msg))) out.push(s.store);
    }
    return out;
  }
}

// ---------------------------------------------------------------- the peer

class Peer {
  constructor(config, log) {
    this.config = config;
    this.log = log;
    this.entities = new Map(); // lower-case name -> Queue | Topic
    this.patterns = [];
    for (const q of config.queues) this.declare('queue', q);
    for (const t of config.topics) this.declare('topic', t);
  }

  declare(kind, def) {
    if (def.name.includes('*')) {
      this.patterns.push({ kind, def, re: globToRegExp(def.name) });
    } else {
      this.entities.set(def.name.toLowerCase(), this.create(kind, def.name, def));
    }
  }

  create(kind, name, def) {
    return kind === 'queue' ? new Queue(this, name, def.props) : new Topic(this, name, def.props, def.subscriptions);
  }

  entity(name) {
    const key = name.toLowerCase();
    let e = this.entities.get(key);
    if (!e) {
      const p = this.patterns.find((x) => x.re.test(key));
      if (!p) return null;
      e = this.create(p.kind, name, p.def);
      this.entities.set(key, e);
    }
    return e;
  }

  // resolve maps a link address to what it names: the entity to send to,
  // the store to receive from, and whether it is a $management node.
  resolve(address) {
    let addr = String(address || '').replace(/^amqps?:\/\/[^/]+\//i, '').replace(/^\/+/, '');
    let management = false;
    if (/\/\$management$/i.test(addr)) {
      management = true;
      addr = addr.replace(/\/\$management$/i, '');
    }
    let deadLetter = false;
    if (/\/\$deadletterqueue$/i.test(addr)) {
      deadLetter = true;
      addr = addr.replace(/\/\$deadletterqueue$/i, '');
    }
    const parts = addr.split('/');
    const entity = this.entity(parts[0]);
    if (!entity) return { error: `The messaging entity '${addr}' could not be found.` };
    if (parts.length === 1) {
      if (entity.kind === 'topic' && (deadLetter || management)) {
        return management ? { entity, management } : { error: `Topic '${entity.name}' has no dead-letter queue.` };
      }
      const store = entity.kind === 'queue' ? entity.store : null;
      return { entity, store: deadLetter && store ? store.dlq : store, management, path: addr };
    }
    if (parts.length === 3 && /^subscriptions$/i.test(parts[1]) && entity.kind === 'topic') {
      const sub = entity.subscriptions.get(parts[2].toLowerCase());
      if (!sub) return { error: `The messaging entity '${addr}' could not be found.` };
      return { entity: null, store: deadLetter ? sub.store.dlq : sub.store, management, path: addr };
    }
    return { error: `The messaging entity '${addr}' could not be found.` };
  }

  allStores() {
    const out = [];
    for (const e of this.entities.values()) {
      const stores = e.kind === 'queue' ? [e.store] : [...e.subscriptions.values()].map((s) => s.store);
      for (const s of stores) out.push(s, s.dlq);
    }
    return out;
  }

  tick() {
    const now = Date.now();
    for (const s of this.allStores()) s.expireLocks(now);
    for (const e of this.entities.values()) {
      const window = e.props.duplicateWindowMs;
      for (const [id, at] of e.seen) if (now - at > window) e.seen.delete(id);
    }
  }

  // accept stores a transfer (one message, or a batch that is stored or
  // refused whole) and returns null or the AMQP error to reject it with.
  accept(entity, messages, transferSize) {
    if (transferSize > entity.props.maxMessageBytes) {
      return { condition: COND.sizeExceeded, description:
        `The received message (size ${transferSize} bytes) exceeds the limit (${entity.props.maxMessageBytes} bytes) currently allowed on the link.` };
    }
    const now = Date.now();
    const fresh = [];
    for (const m of messages) {
      const targets = entity.targets(m);
      if (targets.some((s) => s.props.requiresSession) && m.sessionId === undefined) {
        return { condition: COND.notAllowed, description:
          `The SessionId was not set on a message, and it cannot be sent to the entity '${entity.name}'. Entities that have session support enabled can only receive messages that have the SessionId set to a valid value.` };
      }
      fresh.push({ m, targets });
    }
    for (const { m, targets } of fresh) {
      if (entity.props.requiresDuplicateDetection && m.messageId !== undefined) {
        if (entity.seen.has(m.messageId)) {
          this.log.debug(`duplicate ${m.messageId} dropped by ${entity.name}`);
          continue;
        }
        entity.seen.set(m.messageId, now);
      }
      for (const s of targets) s.enqueue(copyForEntity(m));
    }
    return null;
  }

  checkToken(token) {
    const fields = {};
    const m = /^SharedAccessSignature (.*)$/.exec(String(token || ''));
    if (!m) return null;
    for (const kv of m[1].split('&')) {
      const i = kv.indexOf('=');
      fields[kv.slice(0, i)] = kv.slice(i + 1);
    }
    if (fields.skn !== this.config.keyName || !fields.sr || !fields.sig || !fields.se) return null;
    if (Number(fields.se) * 1000 < Date.now()) return null;
    const want = crypto.createHmac('sha256', this.config.key).update(fields.sr + '\n' + fields.se).digest('base64');
    if (want !== decodeURIComponent(fields.sig)) return null;
    return decodeURIComponent(fields.sr);
  }
}

function settleLocally(delivery) {
  delivery.update(true);
  // go-amqp does not confirm a settlement it asked for in mode second,
  // so rhea would keep the delivery in its window for ever.
  delivery.remote_settled = true;
}

function lockTokenToTag(token) {
  // Service Bus sends the lock token as the delivery tag in .NET's GUID byte
  // order; the SDKs swap it back.
  const t = Buffer.from(token);
  [t[0], t[3]] = [t[3], t[0]];
  [t[1], t[2]] = [t[2], t[1]];
  [t[4], t[5]] = [t[5], t[4]];
  [t[6], t[7]] = [t[7], t[6]];
  return t;
}

// Consumer is one receiver link on a store, peek-lock or receive-and-delete,
// on the whole store or (sessions) on one session.
class Consumer {
  constructor(store, link, sessionId) {
    this.store = store;
    this.link = link;
    this.sessionId = sessionId;
    this.settled = link.remote.attach.snd_settle_mode === 1;
    this.sessionLockedUntil = 0;
  }

  matches(entry) {
    if (this.sessionId === undefined) return true;
    return entry.msg.sessionId === this.sessionId;
  }

  pump() {
    if (this.lostSession || !this.link.is_open()) return;
    while (this.link.sendable()) {
      const i = this.store.available.findIndex((e) => this.matches(e));
      if (i < 0) break;
      const [entry] = this.store.available.splice(i, 1);
      this.store.peer.log.debug(`deliver ${entry.msg.messageId} of ${this.store.name} on link ${this.link.name}`);
      if (this.settled) {
        this.link.send(encodeDelivery(entry, null), crypto.randomBytes(16), 0);
        continue;
      }
      const token = crypto.randomBytes(16);
      token[6] = (token[6] & 0x0f) | 0x40;
      token[8] = (token[8] & 0x3f) | 0x80;
      entry.lockHex = token.toString('hex');
      entry.lockedUntil = Date.now() + this.store.props.lockDurationMs;
      entry.consumer = this;
      this.store.locked.set(entry.lockHex, entry);
      entry.delivery = this.link.send(encodeDelivery(entry, token), lockTokenToTag(token), 0);
      entry.delivery.entry = entry;
    }
    // A receiver that drains (the SDK does after each receive call) is told
    // at once that nothing more is there, instead of waiting for it.
    if (this.link._draining) this.link.set_drained(true);
  }

  // closed frees the session. A plain receiver's messages stay locked
  // until their locks expire, as Service Bus keeps them; a session's
  // messages are locked by the session lock, so they come back with it,
  // counted as delivered.
  closed() {
    this.store.consumers.delete(this);
    const mine = [...this.store.locked.values()].filter((e) => e.consumer === this);
    for (const entry of mine) entry.delivery = null;
    if (this.sessionId !== undefined && this.store.sessionLocks.get(this.sessionId) === this) {
      this.store.sessionLocks.delete(this.sessionId);
      for (const entry of mine) this.store.release(entry, true);
      this.store.pump();
    }
  }
}

function lockedEntry(store, tokenBuf) {
  const hex = Buffer.from(tokenBuf).toString('hex');
  const entry = store.locked.get(hex);
  if (!entry || entry.lockedUntil <= Date.now()) return null;
  return entry;
}

// settle applies one outcome to a locked entry and returns null or an error.
function settle(store, entry, outcome, settleTransfer) {
  switch (outcome.kind) {
    case 'complete':
      store.unlock(entry, settleTransfer);
      return null;
    case 'abandon':
      store.release(entry, true, outcome.propertiesToModify, settleTransfer);
      return null;
    case 'deadletter':
      store.unlock(entry, settleTransfer);
      store.deadLetter(entry, outcome.reason || '', outcome.description || '', outcome.propertiesToModify);
      store.pump();
      return null;
    default:
      return { condition: COND.notImplemented, description: `The disposition ${outcome.kind} is not implemented by this peer.` };
  }
}

function outcomeOf(state) {
  const name = state && state.constructor && state.constructor.composite_type;
  switch (name) {
    case 'accepted': return { kind: 'complete' };
    case 'modified':
      if (state.undeliverable_here) return { kind: 'defer' };
      return { kind: 'abandon', propertiesToModify: state.message_annotations };
    case 'rejected': {
      const info = (state.error && state.error.info) || {};
      const { DeadLetterReason, DeadLetterErrorDescription, ...rest } = info;
      return { kind: 'deadletter', reason: DeadLetterReason, description: DeadLetterErrorDescription, propertiesToModify: rest };
    }
    case 'released': return { kind: 'release' };
    default: return { kind: String(name) };
  }
}

// ---------------------------------------------------------------- server

function main() {
  const port = Number(process.env.HERALD_SERVICEBUS_PORT || 5673);
  const host = process.env.HERALD_SERVICEBUS_HOST || '127.0.0.1';
  const configFile = process.env.HERALD_SERVICEBUS_CONFIG || path.join(__dirname, 'config.json');
  const debugOn = process.env.HERALD_SERVICEBUS_DEBUG === '1';
  const log = {
    debug: (...a) => { if (debugOn) console.log(new Date().toISOString(), ...a); },
    info: (...a) => console.log(new Date().toISOString(), ...a),
    error: (...a) => console.error(new Date().toISOString(), ...a),
  };
  const peer = new Peer(loadConfig(configFile), log);
  const container = rhea.create_container({ id: 'herald-servicebus-peer', treat_modified_as_released: false, autoaccept: false });
  container.sasl_server_mechanisms.enable_anonymous();
  container.sasl_server_mechanisms.enable_plain(() => true);

  container.on('connection_open', (ctx) => {
    ctx.connection.herald = { authorized: new Set(), replyLinks: new Map() };
  });

  container.on('sender_open', (ctx) => openSender(peer, ctx.connection, ctx.sender, log));
  container.on('receiver_open', (ctx) => openReceiver(peer, ctx.connection, ctx.receiver, log));
  container.on('message', (ctx) => onMessage(peer, ctx, log));
  for (const ev of ['accepted', 'rejected', 'released', 'modified']) {
    container.on(ev, (ctx) => onDisposition(peer, ctx));
  }
  const closed = (ctx) => {
    const link = ctx.sender || ctx.receiver;
    for (const s of peer.allStores()) {
      s.waitingForSession = s.waitingForSession.filter((w) => {
        if (w.link !== link) return true;
        clearTimeout(w.timer);
        return false;
      });
    }
    if (link && link.herald && link.herald.consumer) {
      link.herald.consumer.closed();
      link.herald.consumer = null;
    }
  };
  container.on('sender_close', closed);
  container.on('receiver_close', closed);
  container.on('disconnected', (ctx) => {
    for (const s of peer.allStores()) {
      for (const c of [...s.consumers]) if (c.link.connection === ctx.connection) c.closed();
      s.waitingForSession = s.waitingForSession.filter((w) => {
        if (w.link.connection !== ctx.connection) return true;
        clearTimeout(w.timer);
        return false;
      });
    }
  });
  container.on('error', (err) => log.error('amqp error:', err && err.message));

  const timer = setInterval(() => peer.tick(), 200);
  const server = container.listen({ host, port });
  server.on('listening', () => log.info(`herald servicebus peer listening on ${host}:${port}, config ${configFile}`));
  server.on('error', (err) => { log.error('listen:', err.message); process.exit(1); });
  const stop = () => { clearInterval(timer); server.close(); process.exit(0); };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

// echo makes the local attach mirror the client's, as Service Bus does:
// go-amqp fails a link whose settle modes differ from those it asked for.
function echo(link) {
  const remote = link.remote.attach;
  link.local.attach.snd_settle_mode = remote.snd_settle_mode;
  link.local.attach.rcv_settle_mode = remote.rcv_settle_mode;
  link.local.attach.source = remote.source ? wrapSource(remote.source) : null;
  link.local.attach.target = remote.target ? wrapTarget(remote.target) : null;
}

const SOURCE_FIELDS = ['address', 'durable', 'expiry_policy', 'timeout', 'dynamic', 'dynamic_node_properties',
  'distribution_mode', 'filter', 'default_outcome', 'outcomes', 'capabilities'];
const TARGET_FIELDS = ['address', 'durable', 'expiry_policy', 'timeout', 'dynamic', 'dynamic_node_properties', 'capabilities'];

function fieldsOf(t, names) {
  const out = {};
  for (const n of names) if (t[n] !== undefined && t[n] !== null) out[n] = t[n];
  return out;
}

function refuse(link, condition, description) {
  if (link.is_receiver()) link.local.attach.target = null;
  else link.local.attach.source = null;
  link.close({ condition, description });
}

function authorized(peer, connection, path) {
  const lower = path.toLowerCase();
  for (const aud of connection.herald.authorized) {
    if (aud === '' || lower === aud || lower.startsWith(aud + '/')) return true;
  }
  return false;
}

function audiencePath(audience) {
  return String(audience).replace(/^[a-z]+:\/\/[^/]+\/?/i, '').replace(/\/+$/, '').toLowerCase();
}

function sessionFilter(source) {
  const filter = source && source.filter;
  if (!filter || !(SESSION_FILTER in filter)) return { present: false };
  let v = filter[SESSION_FILTER];
  const described = Boolean(v && v.descriptor !== undefined);
  if (described) v = v.value;
  return { present: true, described, sessionId: v === null || v === undefined ? undefined : String(v) };
}

// openSender handles a client's receiver link: a reply link of $cbs or
// $management, or a consumer of a queue, subscription or dead-letter queue.
function openSender(peer, connection, link, log) {
  echo(link);
  link.herald = {};
  const source = link.remote.attach.source || {};
  const target = link.remote.attach.target || {};
  const address = String(source.address || '');
  if (address === '$cbs' || /\/\$management$/i.test(address)) {
    // The Go SDK replies to its link's target address, the JavaScript one
    // to the link's name.
    if (target.address) connection.herald.replyLinks.set(String(target.address), link);
    connection.herald.replyLinks.set(link.name, link);
    return;
  }
  const r = peer.resolve(address);
  if (r.error || !r.store) return refuse(link, COND.notFound, r.error || `Cannot receive from topic '${address}'.`);
  if (!authorized(peer, connection, r.path)) {
    return refuse(link, COND.unauthorized, `Unauthorized access. A put-token for '${r.path}' is required.`);
  }
  const store = r.store;
  const sf = sessionFilter(link.remote.attach.source);
  if (sf.present && !store.props.requiresSession) {
    return refuse(link, COND.notAllowed, `It is not possible for an entity that does not require sessions to create a session receiver: '${store.name}'.`);
  }
  if (!sf.present && store.props.requiresSession) {
    return refuse(link, COND.notAllowed, `It is not possible for an entity that requires sessions to create a non-sessionful message receiver: '${store.name}'.`);
  }
  if (!sf.present) {
    const c = new Consumer(store, link);
    link.herald.consumer = c;
    store.consumers.add(c);
    link.on('sendable', () => c.pump());
    link.on('sender_draining', () => c.pump());
    return;
  }
  // The attach answer waits until the session is locked: a session receiver
  // learns its session id from the source filter the peer echoes.
  link.state.local_open = false;
  link.state.open_requests = 0;
  const grant = (sessionId) => {
    log.debug(`session ${sessionId} of ${store.name} locked by link ${link.name}`);
    const c = new Consumer(store, link, sessionId);
    c.sessionLockedUntil = Date.now() + store.props.lockDurationMs;
    store.sessionLocks.set(sessionId, c);
    store.consumers.add(c);
    link.herald.consumer = c;
    const src = fieldsOf(link.remote.attach.source, SOURCE_FIELDS);
    // The session id comes back in the form the client asked in: the Go SDK
    // sends a described value and reads one back, the JavaScript SDK a plain
    // string.
    src.filter = { [SESSION_FILTER]: sf.described ? types.wrap_described(sessionId, 0x00000137000000C) : sessionId };
    link.local.attach.source = wrapSource(src);
    link.local.attach.properties = { 'com.microsoft:locked-until-utc': dotnetTicks(c.sessionLockedUntil) };
    link.on('sendable', () => c.pump());
    link.on('sender_draining', () => c.pump());
    link.open();
    setImmediate(() => c.pump());
  };
  const fail = (condition, description) => {
    link.local.attach.source = null;
    link.open();
    link.close({ condition, description });
  };
  if (sf.sessionId !== undefined) {
    if (store.sessionLocks.has(sf.sessionId)) {
      return fail(COND.sessionCannotBeLocked, `The requested session '${sf.sessionId}' cannot be accepted. It may be locked by another receiver.`);
    }
    return grant(sf.sessionId);
  }
  const id = store.freeSession();
  if (id !== undefined) return grant(id);
  const props = link.remote.attach.properties || {};
  const timeout = Number(props['com.microsoft:timeout'] || 60000);
  const waiter = { link, grant, fail };
  waiter.timer = setTimeout(() => {
    store.waitingForSession = store.waitingForSession.filter((w) => w !== waiter);
    fail(COND.timeout, 'No session available to accept within the timeout.');
  }, timeout);
  store.waitingForSession.push(waiter);
  log.debug(`session receiver on ${store.name} waits up to ${timeout}ms`);
}

function wrapSource(src) {
  return terminus.source(fieldsOf(src, SOURCE_FIELDS)).described();
}

function wrapTarget(target) {
  return terminus.target(fieldsOf(target, TARGET_FIELDS)).described();
}

// openReceiver handles a client's sender link: to $cbs, a $management node,
// or an entity to send to.
function openReceiver(peer, connection, link) {
  echo(link);
  link.herald = {};
  const target = link.remote.attach.target || {};
  const address = String(target.address || '');
  if (address === '$cbs') {
    link.herald.rpc = 'cbs';
    link.flow(100);
    return;
  }
  const r = peer.resolve(address);
  if (r.error) return refuse(link, COND.notFound, r.error);
  if (r.management) {
    link.herald.rpc = 'management';
    link.herald.resolved = r;
    link.flow(100);
    return;
  }
  if (!r.entity || r.store && r.store.deadLetterOf) {
    return refuse(link, COND.notAllowed, `Cannot send to '${address}'.`);
  }
  if (!authorized(peer, connection, r.path)) {
    return refuse(link, COND.unauthorized, `Unauthorized access. A put-token for '${r.path}' is required.`);
  }
  link.herald.entity = r.entity;
  link.local.attach.max_message_size = r.entity.props.maxMessageBytes;
  link.flow(100);
}

function onMessage(peer, ctx, log) {
  const link = ctx.receiver;
  const h = link.herald || {};
  if (h.rpc) {
    answerRPC(peer, ctx, h);
    ctx.delivery.accept();
    link.flow(1);
    return;
  }
  const entity = h.entity;
  let messages;
  let size;
  try {
    if (ctx.format === BATCH_FORMAT) {
      // A batch: a data section per message, each an encoded AMQP message.
      size = ctx.message.length;
      const outer = rheaMessage.decode(ctx.message);
      const body = outer.body;
      const datas = body && body.multiple ? body.content : [body && body.content !== undefined ? body.content : body];
      messages = datas.filter(Boolean).map((b) => storedMessage(Buffer.from(b), rheaMessage.decode(Buffer.from(b))));
    } else if (ctx.format === undefined || ctx.format === 0) {
      size = ctx.message.raw.length;
      messages = [storedMessage(ctx.message.raw, ctx.message)];
    } else {
      ctx.delivery.reject({ condition: COND.notImplemented, description: `Message format ${ctx.format} is not supported.` });
      link.flow(1);
      return;
    }
  } catch (err) {
    log.error('cannot decode a message:', err.message);
    ctx.delivery.reject({ condition: 'amqp:decode-error', description: err.message });
    link.flow(1);
    return;
  }
  const err = peer.accept(entity, messages, size);
  if (err) ctx.delivery.reject(err);
  else ctx.delivery.accept();
  link.flow(1);
}

function reply(ctx, request, status, description, body) {
  const connection = ctx.connection;
  const to = request.reply_to;
  const link = connection.herald.replyLinks.get(String(to));
  if (!link) return;
  // The status must be an AMQP int: the Go SDK refuses any other type.
  link.send({
    correlation_id: request.message_id,
    application_properties: { statusCode: types.wrap_int(status), statusDescription: description },
    body: body === undefined ? null : body,
  });
}

function answerRPC(peer, ctx, h) {
  const req = ctx.message;
  const props = req.application_properties || {};
  if (h.rpc === 'cbs') {
    const path = peer.checkToken(req.body);
    if (path === null) return reply(ctx, req, 401, 'InvalidSignature: The token has an invalid signature.');
    ctx.connection.herald.authorized.add(audiencePath(path));
    return reply(ctx, req, 202, 'Accepted');
  }
  const store = h.resolved.store;
  const op = props.operation;
  const body = req.body || {};
  const now = Date.now();
  const ok = (value) => reply(ctx, req, 200, 'OK', value);
  switch (op) {
    case 'com.microsoft:renew-lock': {
      if (!store) return reply(ctx, req, 400, 'renew-lock needs a queue or subscription');
      const expirations = [];
      for (const tok of body['lock-tokens'] || []) {
        const entry = lockedEntry(store, tok);
        if (!entry) return reply(ctx, req, 410, `MessageLockLost: The lock supplied is invalid. Either the lock expired, or the message has already been removed from the queue.`);
        entry.lockedUntil = now + store.props.lockDurationMs;
        expirations.push(entry.lockedUntil);
      }
      return ok(types.wrap_map({ expirations: types.wrap_array(expirations, 0x83) }));
    }
    case 'com.microsoft:update-disposition': {
      if (!store) return reply(ctx, req, 400, 'update-disposition needs a queue or subscription');
      const status = body['disposition-status'];
      const kinds = { completed: 'complete', abandoned: 'abandon', suspended: 'deadletter' };
      for (const tok of body['lock-tokens'] || []) {
        const entry = lockedEntry(store, tok);
        if (!entry) return reply(ctx, req, 410, 'MessageLockLost: The lock supplied is invalid.');
        const err = settle(store, entry, {
          kind: kinds[status] || String(status), reason: body['deadletter-reason'],
          description: body['deadletter-description'], propertiesToModify: body['properties-to-modify'],
        }, true);
        if (err) return reply(ctx, req, 501, err.description);
      }
      return ok(types.wrap_map({}));
    }
    case 'com.microsoft:renew-session-lock': {
      const c = store && store.sessionLocks.get(body['session-id']);
      if (!c) return reply(ctx, req, 410, 'SessionLockLost: The session lock has expired or was released.');
      c.sessionLockedUntil = now + store.props.lockDurationMs;
      return ok(types.wrap_map({ expiration: typedTimestamp(c.sessionLockedUntil) }));
    }
    case 'com.microsoft:peek-message': {
      if (!store) return reply(ctx, req, 400, 'peek-message needs a queue or subscription');
      const from = Number(body['from-sequence-number'] || 0);
      const count = Number(body['message-count'] || 1);
      const all = [...store.available, ...store.locked.values()].filter((e) => e.seq >= from)
        .sort((a, b) => a.seq - b.seq).slice(0, count);
      if (!all.length) return reply(ctx, req, 204, 'No messages');
      return ok(types.wrap_map({ messages: types.wrap_list(all.map((e) =>
        types.wrap_map({ message: types.wrap_binary(encodeDelivery(e, null)) }))) }));
    }
    default:
      return reply(ctx, req, 501, `The operation ${op} is not implemented by this peer.`);
  }
}

function onDisposition(peer, ctx) {
  const delivery = ctx.delivery;
  const entry = delivery.entry;
  if (!entry) return;
  const consumer = entry.consumer;
  const store = consumer ? consumer.store : null;
  const outcome = outcomeOf(delivery.remote_state);
  if (!store || entry.delivery !== delivery || entry.lockedUntil <= Date.now()) {
    delivery.update(true, rheaMessage.rejected({ error: { condition: COND.lockLost, description:
      'The lock supplied is invalid. Either the lock expired, or the message has already been removed from the queue.' } }).described());
    delivery.remote_settled = true;
    return;
  }
  // The transfer is settled below, with the outcome.
  entry.delivery = null;
  if (outcome.kind === 'release') {
    // A released message is back at once, not counted: the client gave it
    // back without looking at it.
    store.release(entry, false);
    settleAs(delivery, delivery.remote_state);
    return;
  }
  const err = settle(store, entry, outcome, false);
  if (err) {
    delivery.update(true, rheaMessage.rejected({ error: err }).described());
    delivery.remote_settled = true;
  } else {
    settleAs(delivery, delivery.remote_state);
  }
}

function settleAs(delivery, state) {
  delivery.update(true, state && state.described ? state.described() : undefined);
  delivery.remote_settled = true;
}

module.exports = { Peer, loadConfig, parseDuration };

if (require.main === module) main();
