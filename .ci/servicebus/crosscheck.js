'use strict';
// Drives the peer with Microsoft's own JavaScript client, @azure/service-bus,
// a second implementation independent of the Go SDK the peer was written
// against: send, peek-lock receive, complete, abandon, sessions. Run by
// TestOfficialJavaScriptClient in internal/testservicebus with the
// connection string in HERALD_SERVICEBUS_CONNECTION_STRING and three fresh
// entity names: a queue, a session queue, and a queue it leaves one message
// in for the Go side to read. Exits non-zero, saying why, on any mismatch.

const { ServiceBusClient } = require('@azure/service-bus');

const [queue, sessionQueue, handoff] = process.argv.slice(2);
const connectionString = process.env.HERALD_SERVICEBUS_CONNECTION_STRING;

function check(ok, what) {
  if (!ok) throw new Error('crosscheck: ' + what);
}

async function plainQueue(client) {
  const sender = client.createSender(queue);
  await sender.sendMessages([
    { messageId: 'js-1', body: Buffer.from('one'), subject: 'io.herald.js', applicationProperties: { n: 1 } },
    { messageId: 'js-2', body: Buffer.from('two'), subject: 'io.herald.js', applicationProperties: { n: 2 } },
  ]);
  // A duplicate inside the window: accepted, then dropped.
  await sender.sendMessages({ messageId: 'js-1', body: Buffer.from('one again') });
  await sender.close();

  const receiver = client.createReceiver(queue, { receiveMode: 'peekLock' });
  const got = await receiveAll(receiver, 2);
  check(got.map((m) => m.messageId).join() === 'js-1,js-2', `received ${got.map((m) => m.messageId)}, want js-1,js-2`);
  check(Buffer.from(got[0].body).toString() === 'one', `body ${got[0].body}`);
  check(got[0].subject === 'io.herald.js' && got[0].applicationProperties.n === 1, 'properties of js-1');
  check(got[0].lockToken && got[0].lockToken !== got[1].lockToken, 'lock tokens');
  check(got[0].deliveryCount === 0, `delivery count ${got[0].deliveryCount} on the first delivery, want 0`);
  await receiver.completeMessage(got[0]);
  await receiver.abandonMessage(got[1]);
  const again = await receiveAll(receiver, 1);
  check(again[0].messageId === 'js-2' && again[0].deliveryCount === 1,
    `after abandon: ${again[0].messageId} delivery count ${again[0].deliveryCount}, want js-2 at 1`);
  await receiver.renewMessageLock(again[0]);
  await receiver.completeMessage(again[0]);
  const rest = await receiver.receiveMessages(10, { maxWaitTimeInMs: 1000 });
  check(rest.length === 0, `${rest.length} message(s) left after completing all (the duplicate of js-1 was stored?)`);
  await receiver.close();
}

async function sessions(client) {
  const sender = client.createSender(sessionQueue);
  let refused = false;
  try {
    await sender.sendMessages({ messageId: 'no-session', body: 'x' });
  } catch (err) {
    refused = true;
  }
  check(refused, 'a session queue took a message without a sessionId');
  await sender.sendMessages([
    { messageId: 'a-1', sessionId: 'A', body: 'a1' }, { messageId: 'b-1', sessionId: 'B', body: 'b1' },
    { messageId: 'a-2', sessionId: 'A', body: 'a2' }, { messageId: 'a-3', sessionId: 'A', body: 'a3' },
  ]);
  await sender.close();
  const a = await client.acceptSession(sessionQueue, 'A');
  const got = await receiveAll(a, 3);
  check(got.map((m) => m.messageId).join() === 'a-1,a-2,a-3', `session A: ${got.map((m) => m.messageId)}`);
  for (const m of got) await a.completeMessage(m);
  let locked = false;
  try {
    const twice = await client.acceptSession(sessionQueue, 'A', { maxAutoLockRenewalDurationInMs: 0 });
    await twice.close();
  } catch (err) {
    locked = true;
  }
  check(locked, 'session A accepted a second time while held');
  await a.close();
  const next = await client.acceptNextSession(sessionQueue);
  check(next.sessionId === 'B', `next session ${next.sessionId}, want B`);
  const b = await receiveAll(next, 1);
  await next.completeMessage(b[0]);
  await next.close();
}

async function handOff(client) {
  const sender = client.createSender(handoff);
  await sender.sendMessages({
    messageId: 'from-js', body: Buffer.from('{"hello":"go"}'), contentType: 'application/json',
    subject: 'io.herald.handoff', applicationProperties: { origin: 'js', attempt: 3 },
  });
  await sender.close();
}

async function receiveAll(receiver, n) {
  const out = [];
  const deadline = Date.now() + 15000;
  while (out.length < n && Date.now() < deadline) {
    out.push(...await receiver.receiveMessages(n - out.length, { maxWaitTimeInMs: 2000 }));
  }
  check(out.length === n, `received ${out.length} of ${n}`);
  return out;
}

async function main() {
  check(connectionString && queue && sessionQueue && handoff, 'usage: crosscheck.js QUEUE SESSION_QUEUE HANDOFF_QUEUE');
  const client = new ServiceBusClient(connectionString, { retryOptions: { maxRetries: 1, timeoutInMs: 20000 } });
  try {
    await plainQueue(client);
    await sessions(client);
    await handOff(client);
  } finally {
    await client.close();
  }
  console.log('crosscheck: ok');
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : err);
  process.exit(1);
});
