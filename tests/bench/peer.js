// The PouchDB half of the benchmark suite's figure 6 (tests/bench/run.sh,
// docs/benchmarks.md "6. Peer"), and the data both halves replicate. Run
// with NODE_PATH at the node_modules of tests/fieldlink/peer/package.json.
//
//   node peer.js gen WORDS.json OUTDIR NAME N
//       a plan, 60 indicators (about 400 bytes of JSON each) and N indicator
//       reports (about 300) as PouchDB documents (OUTDIR/NAME.json) and as
//       the same records for napsync-loadgen (OUTDIR/NAME.tsv: one record a
//       line, entity type, id, then its FIELD:KIND=VALUE assignments,
//       tab-separated). The words of the free text are drawn (a seeded
//       generator: every run gets the same bytes) from those of the reports
//       of WORDS.json, the field-link benchmark's documents
//       (tests/fieldlink/peer/plan.js), so that they compress as much.
//   node peer.js push URL DIR DOCS.json
//       writes the documents into a new local database DIR (not timed), then
//       one one-shot replication DIR -> URL (an empty remote database)
//   node peer.js live URL DIR DOCS.json WRITES GAP_MS
//       writes the plan and indicators of DOCS.json to URL, starts a live
//       replication URL -> DIR (a new local database), and once it has
//       caught up a writer (its own connection) puts one report at a time
//       to URL: 1 to warm up, then WRITES measured, each after the one
//       before has reached DIR and GAP_MS more have passed. Latency: from the
//       put's call to the subscriber's replication reporting the document
//       written to DIR (its "change" event).
//
// The replications are PouchDB.replicate with its defaults (batches of 100,
// 10 in flight); remote requests go through a keep-alive agent per remote
// database (pouchdb-node's own default opens a connection, and a TLS
// handshake, per request). Prints one JSON line; exits 0 when all the work
// was done and checked, 1 when not, 2 on usage.
'use strict';

const fs = require('fs');
const http = require('http');
const https = require('https');
const path = require('path');
// Only push and live need it: gen runs without the npm packages.
let PouchDB = null;

const N_INDICATORS = 60;
const REPORT_BYTES = 300;
const INDICATOR_BYTES = 400;
// The plan's period: reports are daily, one per indicator and day (the
// server allows one live report per indicator and period), inside it.
const PLAN_START = Date.UTC(2024, 0, 1);
const PLAN_DAYS = 1827; // 2024-01-01 .. 2028-12-31

function usage() {
    console.error('usage: node peer.js gen WORDS OUTDIR NAME N | push URL DIR DOCS | ' +
        'live URL DIR DOCS WRITES GAP_MS');
    process.exit(2);
}

function nowUs() {
    return Number(process.hrtime.bigint() / 1000n);
}

// ---- data ----------------------------------------------------------------------------------

// mulberry32, seeded per data set.
function generator(seedText) {
    let seed = 0;
    for (const ch of seedText)
        seed = (Math.imul(seed, 31) + ch.charCodeAt(0)) >>> 0;
    return () => {
        seed = (seed + 0x6d2b79f5) >>> 0;
        let t = seed;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}

function gen(wordsFile, outDir, name, n) {
    const random = generator(name);
    const source = JSON.parse(fs.readFileSync(wordsFile, 'utf8'));
    const vocabulary = [...new Set(source.filter((d) => d.type === 'indicator_report')
        .flatMap((d) => `${d.narrative} ${d.evidence}`.toLowerCase().split(/[^a-z]+/))
        .filter((w) => w.length > 0))].sort();
    if (vocabulary.length < 50)
        throw new Error(`gen: only ${vocabulary.length} words in ${wordsFile}`);
    const pick = (a) => a[Math.floor(random() * a.length)];
    const words = (k) => Array.from({length: k}, () => pick(vocabulary)).join(' ');
    const capital = (w) => w[0].toUpperCase() + w.slice(1);
    const decimal = (lo, hi) => (lo + random() * (hi - lo)).toFixed(1);
    const uuid = () => {
        const h = Array.from({length: 32}, () => Math.floor(random() * 16).toString(16));
        h[12] = '4';
        h[16] = (8 + Math.floor(random() * 4)).toString(16);
        const s = h.join('');
        return `${s.slice(0, 8)}-${s.slice(8, 12)}-${s.slice(12, 16)}-${s.slice(16, 20)}-${s.slice(20)}`;
    };
    // Lengthens o[key] until the document is about bytes of JSON.
    const pad = (o, key, bytes) => {
        while (JSON.stringify(o).length < bytes - 1)
            o[key] += ' ' + pick(vocabulary);
        o[key] += '.';
        return o;
    };
    const day = (k) => new Date(PLAN_START + k * 86400000).toISOString().slice(0, 10);
    if (n > N_INDICATORS * PLAN_DAYS)
        throw new Error(`gen: at most ${N_INDICATORS * PLAN_DAYS} reports`);

    const planId = uuid();
    // Each record: [entity type, its document, the napsync kind of each field].
    const records = [];
    const TEXT = 'text';
    records.push(['plan', {_id: planId, type: 'plan', title: `Peer benchmark plan ${name}`,
        kind: 'nap', status: 'adopted', period_start: day(0), period_end: day(PLAN_DAYS - 1)},
    {title: TEXT, kind: TEXT, status: TEXT, period_start: 'date', period_end: 'date'}]);
    const indicators = [];
    for (let i = 0; i < N_INDICATORS; i++) {
        const doc = pad({_id: uuid(), type: 'indicator', plan_id: planId,
            code: `PB-${String(i).padStart(2, '0')}`, title: `${capital(words(4))} (${i})`,
            definition: capital(words(6)), unit: 'per cent', value_type: 'percentage',
            frequency: 'quarterly', baseline: decimal(5, 25), baseline_date: '2023-12-31',
            target: decimal(25, 60), target_date: '2028-12-31',
            verification: capital(words(3))}, 'definition', INDICATOR_BYTES);
        indicators.push(doc._id);
        records.push(['indicator', doc, {plan_id: 'ref', code: TEXT, title: TEXT,
            definition: TEXT, unit: TEXT, value_type: TEXT, frequency: TEXT,
            baseline: 'decimal', baseline_date: 'date', target: 'decimal', target_date: 'date',
            verification: TEXT}]);
    }
    const reportKinds = {plan_id: 'ref', indicator_id: 'ref', period_start: 'date',
        period_end: 'date', status: TEXT, value: 'decimal', narrative: TEXT, evidence: TEXT};
    for (let j = 0; j < n; j++) {
        const ind = j % N_INDICATORS;
        const d = day(Math.floor(j / N_INDICATORS));
        records.push(['indicator_report', pad({_id: uuid(), type: 'indicator_report',
            plan_id: planId, indicator_id: indicators[ind], period_start: d, period_end: d,
            status: 'submitted', value: decimal(5, 60),
            narrative: capital(words(3)),
            evidence: `${capital(words(2))} ${j}`}, 'narrative', REPORT_BYTES), reportKinds]);
    }
    const tsv = records.map(([type, doc, kinds]) => [type, doc._id].concat(
        Object.keys(kinds).map((k) => {
            if (/[\t\n]/.test(doc[k]))
                throw new Error(`gen: a tab or newline in ${k}`);
            return `${k}:${kinds[k]}=${doc[k]}`;
        })).join('\t'));
    fs.writeFileSync(path.join(outDir, `${name}.json`),
        JSON.stringify(records.map((r) => r[1])) + '\n');
    fs.writeFileSync(path.join(outDir, `${name}.tsv`), tsv.join('\n') + '\n');
    const reports = records.slice(1 + N_INDICATORS).map((r) => JSON.stringify(r[1]).length);
    console.log(JSON.stringify({plan_id: planId, docs: records.length, reports: n,
        report_bytes: Math.round(reports.reduce((s, b) => s + b, 0) / Math.max(1, n))}));
    return 0;
}

// ---- replication ---------------------------------------------------------------------------

function remoteDb(url) {
    const mod = new URL(url).protocol === 'https:' ? https : http;
    const agent = new mod.Agent({keepAlive: true});
    return new PouchDB(url, {
        fetch: (u, opts) => PouchDB.fetch(u, Object.assign({}, opts, {agent: agent})),
    });
}

async function bulkLoad(db, docs) {
    for (let i = 0; i < docs.length; i += 1000) {
        const res = await db.bulkDocs(docs.slice(i, i + 1000));
        if (res.some((x) => !x.ok))
            throw new Error('a document was refused');
    }
}

async function push(url, dir, docsFile) {
    const docs = JSON.parse(fs.readFileSync(docsFile, 'utf8'));
    const local = new PouchDB(dir);
    await bulkLoad(local, docs);
    const t0 = nowUs();
    const cpu0 = process.cpuUsage();
    const remote = remoteDb(url);
    const r = await PouchDB.replicate(local, remote);
    const us = nowUs() - t0;
    const cpu = process.cpuUsage(cpu0);
    const count = (await remote.info()).doc_count;
    // cpu_s: this process's, during the replication only.
    console.log(JSON.stringify({ms: us / 1000, cpu_s: (cpu.user + cpu.system) / 1e6,
        docs: docs.length, docs_written: r.docs_written, remote_docs: count}));
    return r.ok !== false && r.docs_written === docs.length && count === docs.length ? 0 : 1;
}

function pct(sorted, q) {
    const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
    return sorted[rank - 1] / 1000;
}

async function live(url, dir, docsFile, writes, gapMs) {
    const docs = JSON.parse(fs.readFileSync(docsFile, 'utf8'));
    const setup = docs.filter((d) => d.type !== 'indicator_report');
    const reports = docs.filter((d) => d.type === 'indicator_report');
    if (reports.length < writes + 1)
        throw new Error(`live: ${reports.length} reports in ${docsFile}, ${writes + 1} needed`);
    await bulkLoad(remoteDb(url), setup);
    const local = new PouchDB(dir);
    const writer = remoteDb(url);
    const sent = new Map(); // id -> [write index, µs of the put's call]
    const lat = [];
    let next = 0;
    let failed = null;
    return new Promise((resolve) => {
        const rep = PouchDB.replicate(remoteDb(url), local, {live: true, retry: true});
        let caughtUp = false;
        let delivered = -1;
        let acked = -1;
        let finished = false;
        const finish = (ok) => {
            if (finished)
                return;
            finished = true;
            rep.cancel();
            lat.sort((a, b) => a - b);
            console.log(JSON.stringify({writes: lat.length, p50_ms: pct(lat, 0.5),
                p90_ms: pct(lat, 0.9), p99_ms: pct(lat, 0.99), max_ms: pct(lat, 1),
                error: failed}));
            resolve(ok ? 0 : 1);
        };
        const write = () => {
            const doc = reports[next];
            sent.set(doc._id, [next, nowUs()]);
            writer.put(doc).then(() => {
                acked = sent.get(doc._id)[0];
                settle();
            }, (err) => {
                failed = `put: ${err.message}`;
                finish(false);
            });
        };
        // The write in progress has reached DIR and been acknowledged: the next.
        const settle = () => {
            if (delivered !== next || acked !== next)
                return;
            next++;
            if (next > writes)
                finish(true);
            else
                setTimeout(write, gapMs);
        };
        rep.on('change', (info) => {
            const t = nowUs();
            for (const d of info.docs) {
                const s = sent.get(d._id);
                if (s === undefined)
                    continue; // the plan and its indicators
                if (s[0] !== next) {
                    failed = `write ${s[0]} arrived while ${next} was in progress`;
                    return finish(false);
                }
                if (s[0] > 0)
                    lat.push(t - s[1]);
                delivered = s[0];
            }
            settle();
        });
        rep.on('paused', (err) => {
            if (err || caughtUp)
                return;
            local.info().then((i) => {
                if (!caughtUp && i.doc_count === setup.length) {
                    caughtUp = true;
                    write();
                }
            });
        });
        rep.on('error', (err) => {
            failed = `replication: ${err.message}`;
            finish(false);
        });
        setTimeout(() => {
            failed = `timed out at write ${next}`;
            finish(false);
        }, 120000 + writes * (gapMs + 1000)).unref();
    });
}

async function main() {
    const a = process.argv.slice(2);
    if (a[0] === 'gen' && a.length === 5 && Number(a[4]) >= 0)
        return gen(a[1], a[2], a[3], Number(a[4]));
    if (a[0] === 'push' && a.length === 4) {
        PouchDB = require('pouchdb-node');
        return push(a[1], a[2], a[3]);
    }
    if (a[0] === 'live' && a.length === 6 && Number(a[4]) >= 1 && Number(a[5]) >= 0) {
        PouchDB = require('pouchdb-node');
        return live(a[1], a[2], a[3], Number(a[4]), Number(a[5]));
    }
    usage();
    return 2;
}

main().then((rc) => process.exit(rc), (err) => {
    console.error(`peer.js: ${err && err.stack ? err.stack : err}`);
    process.exit(1);
});
