// The non-Python limit for the benchmark: amqplib with streamed publisher confirms
// (a window of 1000 in flight), prefetch 1000 and acks in batches of 100.
//   node amqp_bench.js publish URL QUEUE COUNT SIZE [RATE]   (RATE msgs/s, 0 = as fast as possible)
//   node amqp_bench.js consume URL QUEUE COUNT               (prints one JSON line of results)
'use strict';
const amqp = require('amqplib');
const { performance } = require('perf_hooks');

const nowSeconds = () => (performance.timeOrigin + performance.now()) / 1000;
const sleepUntil = (t) => new Promise((resolve) => setTimeout(resolve, Math.max(0, (t - nowSeconds()) * 1000)));

async function publish(url, queue, count, size, rate) {
  const conn = await amqp.connect(url);
  const ch = await conn.createConfirmChannel();
  await ch.assertQueue(queue, { durable: true });
  const window = 1000;
  let inFlight = 0;
  const waiters = [];
  const done = () => { inFlight--; if (inFlight < window && waiters.length) waiters.shift()(); };
  const start = nowSeconds();
  for (let i = 0; i < count; i++) {
    if (rate > 0) await sleepUntil(start + i / rate);
    while (inFlight >= window) await new Promise((resolve) => waiters.push(resolve));
    const body = Buffer.alloc(size);
    body.writeDoubleLE(nowSeconds(), 0);
    inFlight++;
    ch.publish('', queue, body, { persistent: true, mandatory: true }, (err) => {
      if (err) { console.error('nacked'); process.exit(1); }
      done();
    });
  }
  await ch.waitForConfirms();
  await conn.close();
}

async function consume(url, queue, count) {
  const conn = await amqp.connect(url);
  const ch = await conn.createChannel();
  await ch.assertQueue(queue, { durable: true });
  await ch.prefetch(1000);
  const latencies = [];
  let first = 0;
  let last = 0;
  let unacked = 0;
  await new Promise((resolve) => {
    ch.consume(queue, (msg) => {
      const now = nowSeconds();
      if (!first) first = now;
      last = now;
      latencies.push((now - msg.content.readDoubleLE(0)) * 1000);
      unacked++;
      if (unacked >= 100 || latencies.length === count) { ch.ack(msg, true); unacked = 0; }
      if (latencies.length === count) resolve();
    }, { noAck: false });
    console.log('ready');
  });
  console.log(JSON.stringify({ count: latencies.length, first_recv: first, last_recv: last, latencies_ms: latencies }));
  await conn.close();
}

const [mode, url, queue, count, size, rate] = process.argv.slice(2);
(mode === 'publish' ? publish(url, queue, +count, +size, +(rate || 0)) : consume(url, queue, +count))
  .catch((err) => { console.error(String(err)); process.exit(1); });
