// The data of the field-link benchmark (tests/fieldlink/run.sh), the same
// records for napsync and for PouchDB:
//
//   node plan.js OUTDIR
//
// writes OUTDIR/plan.json (a napsync plan file, docs/import-export.md): a
// plan, 60 indicators of about 400 bytes of JSON and 240 indicator reports
// (four quarters of 2025 each) of about 300; OUTDIR/docs.json: the same
// 301 records as PouchDB documents (the record's fields, plus _id, type and
// plan_id); OUTDIR/new.json: 20 new reports (first quarter of 2026) as
// PouchDB documents, and OUTDIR/new.tsv: the same as `napsync put` field
// assignments, one report per line (its id, then its fields, tab-separated).
// Everything is deterministic: every run gets the same bytes. The free text
// is words drawn at random from a vocabulary of the reports' own language
// (a seeded generator), so that it compresses about as much as text that
// people write (about 3 times with gzip), not ten times as repeated phrases
// would: what a compressing protocol gains depends on it.
'use strict';

const fs = require('fs');
const path = require('path');

const N_INDICATORS = 60;
const QUARTERS = [
    ['2025-01-01', '2025-03-31'],
    ['2025-04-01', '2025-06-30'],
    ['2025-07-01', '2025-09-30'],
    ['2025-10-01', '2025-12-31'],
];
const N_NEW = 20;
const INDICATOR_BYTES = 400;
const REPORT_BYTES = 300;

const VOCABULARY = (
    'the a of in and to for on with by from at as was were is are be has have had not no ' +
    'district office police station officers women girls men boys staff recruits training ' +
    'course courses module modules session sessions workshop workshops community leaders ' +
    'elders chiefs council councils committee committees village villages market markets ' +
    'school schools clinic clinics hospital shelter shelters survivor survivors case cases ' +
    'report reports reported reporting register registers record records file files form ' +
    'forms list lists desk desks unit units gender protection prevention participation ' +
    'relief recovery violence sexual domestic abuse harassment referral referrals pathway ' +
    'pathways justice court courts prosecutor prosecutors magistrate judge hearing hearings ' +
    'legal aid lawyer lawyers paralegal paralegals budget funds funding donor donors ' +
    'ministry ministries partner partners organisation organisations network networks ' +
    'radio programme programmes campaign campaigns awareness outreach visit visits patrol ' +
    'patrols border crossing checkpoint road roads rainy season flooding drought harvest ' +
    'displaced returnees camp camps settlement settlements host families households ' +
    'quarter quarterly month monthly week weekly year annual plan plans target targets ' +
    'baseline progress delay delays shortage shortages fuel vehicle vehicles motorbike ' +
    'phone network coverage electricity generator solar laptop printer paper copies ' +
    'supervisor supervisors focal point points coordinator coordinators deputy head heads ' +
    'chairperson members member youth young older widows disabilities interpreter ' +
    'language languages local national regional provincial county ward wards zone zones ' +
    'north south east west central upper lower new old first second third fourth last ' +
    'two three four five six seven eight nine ten twelve fifteen twenty thirty several ' +
    'many few more less most some all each every other same different small large ' +
    'recruited trained deployed promoted transferred retired resigned appointed elected ' +
    'met held attended organised planned postponed cancelled completed started continued ' +
    'improved reduced increased doubled remained stayed fell rose reached exceeded missed ' +
    'checked verified confirmed counted collected submitted approved returned corrected ' +
    'delayed because due after before during since until while although however also ' +
    'still only again already now then later earlier recently mainly partly fully largely ' +
    'female male officer constable sergeant inspector commander investigator investigators ' +
    'medical certificate certificates forensic evidence statement statements witness ' +
    'witnesses confidential safe space spaces hotline calls call follow up mediation ' +
    'dispute disputes land inheritance marriage early forced dowry custody maintenance ' +
    'teachers nurses midwives health workers volunteers mentors peer groups clubs ' +
    'savings livelihoods skills literacy numeracy leadership negotiation peace security ' +
    'conflict ceasefire dialogue reconciliation early warning signals monitors monitoring ' +
    'evaluation survey surveys interviews focus data figures numbers share rate rates'
).split(' ');
const SYLLABLES = ['ka', 'lo', 'mbe', 'ru', 'ta', 'ni', 'go', 'wa', 'ze', 'bu', 'di', 'ma',
    'sho', 'ke', 'la', 'nya', 'po', 'si', 'ye', 'ba'];

// mulberry32: small and deterministic, enough for text.
let seed = 1325;
function random() {
    seed = (seed + 0x6d2b79f5) >>> 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

const pick = (a) => a[Math.floor(random() * a.length)];
const capital = (w) => w[0].toUpperCase() + w.slice(1);
const words = (n) => Array.from({length: n}, () => pick(VOCABULARY)).join(' ');
// A district's name, from syllables.
const place = () => capital(Array.from({length: 2 + Math.floor(random() * 2)},
    () => pick(SYLLABLES)).join(''));
const decimal = (lo, hi) => (lo + random() * (hi - lo)).toFixed(1);

// A random (version 4) UUID, as devices make them, from the seeded generator.
function uuid() {
    const h = Array.from({length: 32}, () => Math.floor(random() * 16).toString(16));
    h[12] = '4';
    h[16] = (8 + Math.floor(random() * 4)).toString(16);
    const s = h.join('');
    return `${s.slice(0, 8)}-${s.slice(8, 12)}-${s.slice(12, 16)}-${s.slice(16, 20)}-${s.slice(20)}`;
}

// Lengthens o[key] with random words until JSON.stringify(o) is about bytes
// long (never longer than bytes + one word and a full stop).
function pad(o, key, bytes) {
    while (JSON.stringify(o).length < bytes - 1)
        o[key] += ' ' + pick(VOCABULARY);
    o[key] += '.';
    return o;
}

const PLAN_ID = uuid();
const districts = [];
const indicatorIds = [];

function indicator(i) {
    const district = place();
    districts[i] = district;
    return pad({
        id: (indicatorIds[i] = uuid()),
        code: `FL-${String(i).padStart(2, '0')}`,
        title: `${capital(words(4))} in ${district} (${i})`,
        definition: capital(words(6)),
        unit: pick(['per cent', 'number', 'cases', 'people']),
        value_type: 'percentage',
        frequency: 'quarterly',
        baseline: decimal(5, 25),
        baseline_date: '2024-12-31',
        target: decimal(25, 60),
        target_date: '2028-12-31',
        verification: `${capital(words(3))} of ${district}`,
    }, 'definition', INDICATOR_BYTES);
}

function report(id, ind, q, start, end, year) {
    return pad({
        id: id,
        indicator_id: indicatorIds[ind],
        period_start: start,
        period_end: end,
        status: 'submitted',
        value: decimal(5, 60),
        narrative: `Quarter ${q + 1} of ${year} in ${districts[ind]}: ${words(3)}`,
        evidence: `${capital(words(2))} FL-${String(ind).padStart(2, '0')}-${year}-Q${q + 1}`,
    }, 'narrative', REPORT_BYTES);
}

function putLine(r) {
    return [r.id, `plan_id:ref=${PLAN_ID}`, `indicator_id:ref=${r.indicator_id}`,
        `period_start:date=${r.period_start}`, `period_end:date=${r.period_end}`,
        `status:text=${r.status}`, `value:decimal=${r.value}`, `narrative:text=${r.narrative}`,
        `evidence:text=${r.evidence}`].join('\t');
}

function pouchDoc(type, r) {
    const d = {_id: r.id, type: type, plan_id: PLAN_ID};
    for (const [k, v] of Object.entries(r))
        if (k !== 'id')
            d[k] = v;
    return d;
}

function main() {
    if (process.argv.length !== 3) {
        console.error('usage: node plan.js OUTDIR');
        process.exit(2);
    }
    const out = process.argv[2];
    const plan = {
        id: PLAN_ID,
        title: 'Field link benchmark: National Action Plan on Women, Peace and Security',
        kind: 'nap',
        status: 'adopted',
        period_start: '2024-01-01',
        period_end: '2028-12-31',
    };
    const indicators = [];
    const reports = [];
    for (let i = 1; i <= N_INDICATORS; i++)
        indicators.push(indicator(i));
    for (let i = 1; i <= N_INDICATORS; i++)
        for (let q = 0; q < QUARTERS.length; q++)
            reports.push(report(uuid(), i, q, QUARTERS[q][0],
                QUARTERS[q][1], 2025));
    const fresh = [];
    for (let n = 1; n <= N_NEW; n++)
        fresh.push(report(uuid(), n, 0, '2026-01-01', '2026-03-31', 2026));

    const file = {format: 'napsync-plan', version: 1, plan: plan, indicators: indicators,
        indicator_reports: reports};
    fs.writeFileSync(path.join(out, 'plan.json'), JSON.stringify(file, null, 1) + '\n');
    const docs = [pouchDoc('plan', plan)]
        .concat(indicators.map((r) => pouchDoc('indicator', r)))
        .concat(reports.map((r) => pouchDoc('indicator_report', r)));
    fs.writeFileSync(path.join(out, 'docs.json'), JSON.stringify(docs) + '\n');
    fs.writeFileSync(path.join(out, 'new.json'),
        JSON.stringify(fresh.map((r) => pouchDoc('indicator_report', r))) + '\n');
    fs.writeFileSync(path.join(out, 'new.tsv'), fresh.map(putLine).join('\n') + '\n');
    const avg = (a) => Math.round(a.reduce((s, r) => s + JSON.stringify(r).length, 0) / a.length);
    console.log(JSON.stringify({plan_id: PLAN_ID, indicators: indicators.length,
        indicator_bytes: avg(indicators), reports: reports.length, report_bytes: avg(reports),
        new_reports: fresh.length, new_report_bytes: avg(fresh)}));
}

main();
