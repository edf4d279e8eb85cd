// The PouchDB side of the field-link benchmark (tests/fieldlink/run.sh): a
// pouchdb-node client with a LevelDB database of its own, against
// pouchdb-server. Run with NODE_PATH at the node_modules of package.json.
//
//   node pouch.js seed URL DOCS.json       creates the remote database URL
//                                          and writes the documents (bulkDocs)
//   node pouch.js count URL                prints the remote's doc_count
//   node pouch.js pull URL DIR EXPECT [--retry LIMIT_S]
//       first pull into a new local database DIR: one replication from URL,
//       which must leave EXPECT documents
//   node pouch.js push-pull URL DIR NEW.json [--retry LIMIT_S]
//       saves the documents of NEW.json in DIR (not timed), then replicates
//       DIR to URL and URL to DIR, one after the other
//
// The remote database's requests go through one keep-alive agent, as a
// browser's would: pouchdb-node's own default (node-fetch without an agent)
// opens a connection, and so a TLS handshake, for every request.
//
// With --retry the replications are PouchDB's resilient ones (live: true,
// retry: true: reconnect with backoff, resume from the last checkpoint); a
// replication is complete when it pauses without an error, caught up (and
// for the pull when DIR holds EXPECT documents; for the push when every new
// document was written); after LIMIT_S seconds the run gives up. Without it
// a replication that fails fails the run. Prints one JSON line: the
// milliseconds from the first request to the end ("ms"), "completed", and
// the replications' counts. Exits 0 when completed, 1 when not, 2 on usage.
'use strict';

const fs = require('fs');
const http = require('http');
const https = require('https');
const PouchDB = require('pouchdb-node');

// An idle connection is given up after 2 s: pouchdb-server (Node.js) closes
// its idle ones after 5 s, and a request sent on one whose close is still
// on its way over a slow line fails the replication ("socket hang up").
const agentOptions = {keepAlive: true, timeout: 2000};
const agents = {
    'http:': new http.Agent(agentOptions),
    'https:': new https.Agent(agentOptions),
};

function remoteDb(url) {
    const agent = agents[new URL(url).protocol];
    return new PouchDB(url, {
        fetch: (u, opts) => PouchDB.fetch(u, Object.assign({}, opts, {agent: agent})),
    });
}

function usage() {
    console.error('usage: node pouch.js seed URL DOCS | count URL | pull URL DIR EXPECT ' +
        '[--retry S] | push-pull URL DIR NEW [--retry S]');
    process.exit(2);
}

function now() {
    return Number(process.hrtime.bigint() / 1000000n);
}

// One replication of from to to. Without a limit, a one-shot replication
// (rejects on failure). With one, live with retry until done(), checked
// each time it pauses without an error, says it is complete.
function replicate(from, to, limitS, done) {
    if (!limitS)
        return PouchDB.replicate(from, to, {batch_size: 100}).then((r) => ({
            docs_read: r.docs_read, docs_written: r.docs_written, errors: 0, completed: true}));
    return new Promise((resolve) => {
        const stats = {docs_read: 0, docs_written: 0, errors: 0, completed: false};
        const rep = PouchDB.replicate(from, to, {live: true, retry: true, batch_size: 100});
        let finished = false;
        const finish = (ok) => {
            if (finished)
                return;
            finished = true;
            clearTimeout(timer);
            stats.completed = ok;
            rep.cancel();
            resolve(stats);
        };
        const timer = setTimeout(() => finish(false), limitS * 1000);
        rep.on('change', (info) => {
            stats.docs_read = info.docs_read;
            stats.docs_written = info.docs_written;
        });
        rep.on('paused', (err) => {
            if (err) {
                stats.errors++;
                return;
            }
            Promise.resolve(done(stats)).then((ok) => {
                if (ok)
                    finish(true);
            });
        });
        rep.on('error', () => finish(false));
    });
}

async function main() {
    const args = process.argv.slice(2);
    let limitS = 0;
    const r = args.indexOf('--retry');
    if (r >= 0) {
        limitS = Number(args[r + 1]);
        if (!(limitS > 0))
            usage();
        args.splice(r, 2);
    }
    const cmd = args[0];
    if (cmd === 'seed' && args.length === 3) {
        const db = remoteDb(args[1]);
        const docs = JSON.parse(fs.readFileSync(args[2], 'utf8'));
        const res = await db.bulkDocs(docs);
        const bad = res.filter((x) => !x.ok);
        if (bad.length)
            throw new Error(`seed: ${bad.length} documents refused: ${JSON.stringify(bad[0])}`);
        console.log(JSON.stringify({seeded: res.length}));
        return 0;
    }
    if (cmd === 'count' && args.length === 2) {
        const info = await remoteDb(args[1]).info();
        console.log(JSON.stringify({doc_count: info.doc_count}));
        return 0;
    }
    if (cmd === 'pull' && args.length === 4) {
        const expect = Number(args[3]);
        const t0 = now();
        const remote = remoteDb(args[1]);
        const local = new PouchDB(args[2]);
        const res = await replicate(remote, local, limitS,
            async () => (await local.info()).doc_count >= expect);
        const ms = now() - t0;
        const count = (await local.info()).doc_count;
        if (res.completed && count !== expect)
            throw new Error(`pull: ${count} documents, expected ${expect}`);
        console.log(JSON.stringify({ms: ms, completed: res.completed, docs: count,
            docs_read: res.docs_read, errors: res.errors}));
        return res.completed ? 0 : 1;
    }
    if (cmd === 'push-pull' && args.length === 4) {
        const docs = JSON.parse(fs.readFileSync(args[3], 'utf8'));
        const local = new PouchDB(args[2]);
        const res = await local.bulkDocs(docs);
        if (res.some((x) => !x.ok))
            throw new Error('push-pull: the new documents were refused locally');
        const t0 = now();
        const remote = remoteDb(args[1]);
        const up = await replicate(local, remote, limitS, (s) => s.docs_written >= docs.length);
        let down = {completed: false, docs_read: 0, errors: 0};
        if (up.completed)
            down = await replicate(remote, local, limitS ? Math.max(1, limitS - (now() - t0) / 1000)
                : 0, () => true);
        const ms = now() - t0;
        if (up.completed && up.docs_written !== docs.length)
            throw new Error(`push-pull: ${up.docs_written} documents pushed, expected ${docs.length}`);
        const completed = up.completed && down.completed;
        console.log(JSON.stringify({ms: ms, completed: completed, pushed: up.docs_written,
            pulled: down.docs_read, errors: up.errors + down.errors}));
        return completed ? 0 : 1;
    }
    usage();
    return 2;
}

// A request of PouchDB's that fails outside the replication's own handling
// (its database setup, cut by the line) is an unhandled rejection; Node.js
// ends the process on one, a browser, where PouchDB usually runs, logs it.
// So does this client, and the replication goes on retrying.
process.on('unhandledRejection', (err) => {
    console.error(`pouch.js: unhandled: ${err && err.message ? err.message : err}`);
});

main().then((rc) => process.exit(rc), (err) => {
    console.error(`pouch.js: ${err && err.stack ? err.stack : err}`);
    process.exit(1);
});
