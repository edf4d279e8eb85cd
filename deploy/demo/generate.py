#!/usr/bin/env python3
"""Writes the demo plan files of deploy/demo/ (napsync plan files, JSON,
docs/import-export.md), which `deploy/dev.sh up` imports with `napsync
import`. dev.sh needs only the JSON files and the CLI; this script is how
they were made, kept so that they can be changed and made again:

    python3 deploy/demo/generate.py          # rewrites deploy/demo/*.json

Fictional content, realistic in shape: Zedland (country code ZZ, a
user-assigned ISO 3166 code) and its second-generation National Action Plan
on Women, Peace and Security under UNSCR 1325 (four pillars, ten
objectives, forty actions, sixty indicators with three years of reports,
budgets from three funding sources); the implementation plans of its
Ministry of Defence and National Police; a Regional Action Plan of the
regional organisation its NAP maps to; and the NAPs of two more member
states, Xandria (XA) and Xebonia (XB). Organisation ids are the fixed ones
of deploy/demo.sql. The output is deterministic (a seeded generator) and
canonical: each file is byte for byte what `napsync export` writes for its
plan once imported (records by id, fields in the plan file format's order,
decimals and sets in napsync's canonical forms; tests/integration/
test_import.c checks it for nap-zz.json).
"""
import json
import os
import random
from decimal import Decimal

HERE = os.path.dirname(os.path.abspath(__file__))

# deploy/demo.sql gives the demo organisations these ids.
ORG = {
    "mogender": "0e000000-0000-4000-8000-000000000001",
    "mofa": "0e000000-0000-4000-8000-000000000002",
    "defence": "0e000000-0000-4000-8000-000000000003",
    "police": "0e000000-0000-4000-8000-000000000004",
    "wpsnet": "0e000000-0000-4000-8000-000000000005",
    "parliament": "0e000000-0000-4000-8000-000000000006",
    "regional": "0e000000-0000-4000-8000-000000000007",
    "donors": "0e000000-0000-4000-8000-000000000008",
    "xa-women": "0e000000-0000-4000-8000-000000000009",
    "xb-gender": "0e000000-0000-4000-8000-00000000000a",
}

# Plans: the NAP of ZZ keeps the id the demo always had.
PLAN_NO = {"nap-zz": 0, "rap": 1, "nap-xa": 2, "nap-xb": 3, "dap-defence": 4, "iap-police": 5}
TYPE_NO = {
    "plan": 0, "pillar": 1, "objective": 2, "result": 3, "action": 4, "indicator": 5,
    "indicator_target": 6, "indicator_report": 7, "report_value": 8, "budget_line": 9,
}
KEYS = {
    "pillar": "pillars", "objective": "objectives", "result": "results", "action": "actions",
    "indicator": "indicators", "indicator_target": "indicator_targets",
    "indicator_report": "indicator_reports", "report_value": "report_values",
    "budget_line": "budget_lines",
}


def uid(plan, typ, n):
    """d<plan><type>0000-0000-4000-8000-<n>: readable, and a valid version-4 layout."""
    return "d%x%02x0000-0000-4000-8000-%012x" % (PLAN_NO[plan], TYPE_NO[typ], n)


def dec(x):
    """A decimal in the canonical text form napsync keeps (no trailing zeros)."""
    d = Decimal(str(x))
    if d == d.to_integral_value():
        return str(d.quantize(Decimal(1)))
    s = format(d.normalize(), "f")
    return "0" if s in ("-0", "") else s


class Plan:
    def __init__(self, key, fields):
        self.key = key
        self.id = uid(key, "plan", 1)
        self.plan = dict(id=self.id, **fields)
        self.records = {k: [] for k in KEYS}
        self.count = {k: 0 for k in KEYS}

    def add(self, typ, **fields):
        self.count[typ] += 1
        rec = {"id": uid(self.key, typ, self.count[typ])}
        # Sets as napsync keeps them: sorted, without duplicates.
        rec.update({k: sorted(set(v)) if isinstance(v, list) else v
                    for k, v in fields.items() if v is not None and v != []})
        self.records[typ].append(rec)
        return rec["id"]

    def write(self):
        doc = {"format": "napsync-plan", "version": 1, "plan": self.plan}
        for typ, key in KEYS.items():
            if self.records[typ]:
                doc[key] = sorted(self.records[typ], key=lambda r: r["id"])
        path = os.path.join(HERE, self.key + ".json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2, ensure_ascii=False)
            f.write("\n")
        n = 1 + sum(len(v) for v in self.records.values())
        print("%s: %d records" % (os.path.relpath(path), n))


PILLARS = [
    ("P1", "Participation", "participation",
     "Women's full, equal and meaningful participation in decision-making, the security sector "
     "and peace processes."),
    ("P2", "Protection", "protection",
     "Protection of the rights of women and girls and from sexual and gender-based violence, "
     "and accountability for it."),
    ("P3", "Prevention", "prevention",
     "Prevention of conflict and of all forms of violence against women and girls, including "
     "through early warning and disarmament."),
    ("P4", "Relief and Recovery", "relief_recovery",
     "Relief, recovery and reconstruction that meet the needs and use the capacities of women "
     "and girls."),
]

AGE = ["under 18", "18-35", "36 and over"]
LOCATION = ["Capital District", "Northern Province", "Southern Province", "Eastern Border Region"]
SEX = ["female", "male"]
CATEGORIES = {"sex": SEX, "age": AGE, "location": LOCATION}
WEIGHTS = {"sex": [0.62, 0.38], "age": [0.18, 0.55, 0.27], "location": [0.34, 0.22, 0.19, 0.25]}


def split(total, dim, rnd):
    """Integer shares of total over a dimension's categories, summing exactly."""
    ws = [w * (0.9 + 0.2 * rnd.random()) for w in WEIGHTS[dim]]
    s = sum(ws)
    parts = [int(total * w / s) for w in ws]
    parts[-1] += total - sum(parts)
    return list(zip(CATEGORIES[dim], parts))


def add_results(p, objective_id, title, n, position):
    outcome = p.add("result", objective_id=objective_id, level="outcome",
                    code="OC%d" % n, title=title[0], position=position)
    output = p.add("result", objective_id=objective_id, parent_id=outcome, level="output",
                   code="OP%d" % n, title=title[1], position=position)
    return output


def add_indicator(p, rnd, spec, objective_id, output_id, action_id, period, years,
                  regional=None):
    """spec: code, title, value_type, unit, baseline, target, disaggregation, responsible,
    global indicator, tags, 2030 target or None."""
    (code, title, vtype, unit, base, target, disagg, resp, glob, tags, t2030) = spec
    start, end = period
    ind = p.add(
        "indicator", objective_id=objective_id, result_id=output_id, action_id=action_id,
        code=code, title=title,
        definition={
            "number": "Count over the reporting year, from the responsible institution's records.",
            "percentage": "Share at the end of the reporting year, in per cent (0 to 100).",
            "yes_no": "1 when in place at the end of the reporting year, else 0.",
        }[vtype],
        unit=unit, value_type=vtype, frequency="annual",
        disaggregation=sorted(disagg) if disagg else None,
        baseline=dec(base), baseline_date="%d-12-31" % (years[0] - 1),
        target=dec(target), target_date=end,
        responsible_id=ORG[resp],
        verification={
            "number": "Administrative data of the responsible institution, checked by the "
                      "coordinating ministry",
            "percentage": "Official statistics and institutional staffing records",
            "yes_no": "Official gazette, policy or decree text",
        }[vtype],
        regional_indicator_id=regional, global_indicator=glob, tags=sorted(tags) if tags else None,
    )
    mid = years[-1]
    p.add("indicator_target", indicator_id=ind, period_end="%d-12-31" % mid,
          value=dec(interp(base, target, 0.5, vtype)), note="Mid-term target")
    p.add("indicator_target", indicator_id=ind, period_end=end, value=dec(target),
          note="End-of-plan target")
    if t2030 is not None:
        p.add("indicator_target", indicator_id=ind, period_end="2030-12-31", value=dec(t2030),
              note="2030 Agenda target, beyond this plan's end (for its successor)")
    return ind


def interp(base, target, f, vtype):
    v = base + (target - base) * f
    if vtype == "number":
        return int(round(v))
    if vtype == "yes_no":
        return 1 if f >= 0.6 and target == 1 else base
    return round(v, 1)


def add_reports(p, rnd, ind, spec, years, statuses, reporter):
    """One report per year unless missing (overdue); a number indicator's breakdown sums up."""
    (code, title, vtype, unit, base, target, disagg, resp, glob, tags, t2030) = spec
    for k, (year, status) in enumerate(zip(years, statuses)):
        if status is None:
            continue  # not reported: overdue
        progress = (k + 1) / (len(years) + 2) + rnd.uniform(-0.08, 0.08)
        value = interp(base, target, max(0.0, progress), vtype)
        if vtype == "percentage":
            value = min(100.0, max(0.0, value))
        fields = dict(
            indicator_id=ind, period_start="%d-01-01" % year, period_end="%d-12-31" % year,
            status=status,
        )
        if status == "draft" and rnd.random() < 0.4:
            value = None  # a draft still being filled in
        if value is not None:
            fields["value"] = dec(value)
            fields["narrative"] = narrative(title, year, value, unit, vtype)
            fields["evidence"] = "%s annual WPS report %d, annex on %s" % (
                reporter_name(reporter), year, code)
        fields["reporter_id"] = ORG[reporter]
        rep = p.add("indicator_report", **fields)
        if value is not None and vtype == "number" and disagg and value > 0:
            for dim in sorted(disagg):
                for cat, part in split(int(value), dim, rnd):
                    p.add("report_value", report_id=rep, dimension=dim, category=cat,
                          value=dec(part))


NAMES = {
    "mogender": "Ministry of Gender Equality and Social Protection",
    "mofa": "Ministry of Foreign Affairs",
    "defence": "Ministry of Defence",
    "police": "National Police Service",
    "wpsnet": "Women Peacebuilders Network",
    "parliament": "Parliamentary Caucus on WPS",
    "regional": "Regional Economic Community",
    "xa-women": "Ministry of Women's Affairs of Xandria",
    "xb-gender": "Ministry of Gender and Family of Xebonia",
}


def reporter_name(org):
    return NAMES.get(org, org)


def narrative(title, year, value, unit, vtype):
    if vtype == "yes_no":
        return "%d: %s." % (year, "in place" if value == 1 else "not yet in place")
    return "%d: %s %s. Source figures attached; see the evidence reference." % (
        year, value, unit)


def budget(p, rnd, action, years, national_currency, k):
    """Budget lines from the three funding sources."""
    for y in years:
        costed = rnd.randrange(40, 400) * 10000
        allocated = int(costed * rnd.uniform(0.6, 1.0))
        disbursed = int(allocated * rnd.uniform(0.4, 1.0)) if y < 2026 else 0
        spent = int(disbursed * rnd.uniform(0.7, 1.0))
        p.add("budget_line", action_id=action, fiscal_year=y, currency=national_currency,
              costed=dec(costed), allocated=dec(allocated), disbursed=dec(disbursed),
              spent=dec(spent), funding_source="national_budget",
              gender_responsive=rnd.random() < 0.7,
              note="Budget line %d-%03d of the Finance Act %d" % (y, 100 + k, y))
    y = years[-1]
    if k % 3 != 2:
        costed = rnd.randrange(20, 150) * 1000 + rnd.randrange(0, 100) / 100
        p.add("budget_line", action_id=action, fiscal_year=y, currency="USD",
              costed=dec(costed), allocated=dec(costed), disbursed=dec(round(costed * 0.6, 2)),
              spent=dec(round(costed * 0.45, 2)), funding_source="donor_basket_fund",
              funder_id=ORG["donors"], gender_responsive=True,
              note="WPS basket fund, %d allocation round" % y)
    else:
        costed = rnd.randrange(10, 90) * 1000
        p.add("budget_line", action_id=action, fiscal_year=y, currency="EUR",
              costed=dec(costed), allocated=dec(round(costed * 0.8)), disbursed=dec(0),
              spent=dec(0), funding_source="other_fund", gender_responsive=True,
              note="Peacebuilding fund grant, pending disbursement")


# ---- the Regional Action Plan -----------------------------------------------------------------

RAP_INDICATORS = [
    ("R1.1", "Member states with a National Action Plan on WPS in force", "number", "states",
     1, 3, None, "regional", None, ["peace-negotiations"], None),
    ("R1.2", "Average share of women in member states' national parliaments", "percentage",
     "per cent", 21.4, 33, None, "regional", "SDG 5.5.1a", None, 40),
    ("R1.3", "Share of women in regional mediation and election observation missions",
     "percentage", "per cent", 18, 40, None, "regional", None, ["peace-negotiations"], 50),
    ("R2.1", "Member states with a specialised unit for sexual and gender-based violence in "
     "the police", "number", "states", 1, 3, None, "regional", None,
     ["sgbv-accountability", "women-in-police"], None),
    ("R2.2", "Average share of women in member states' armed forces", "percentage",
     "per cent", 7.5, 15, None, "regional", None, ["women-in-armed-forces"], None),
    ("R3.1", "Member states whose early-warning system collects sex-disaggregated data",
     "number", "states", 0, 3, None, "regional", None, ["early-warning"], None),
    ("R3.2", "Member states integrating gender into small arms control strategies", "number",
     "states", 1, 3, None, "regional", None, ["small-arms", "disarmament"], None),
    ("R4.1", "Share of humanitarian funding in the region targeting women and girls",
     "percentage", "per cent", 9, 20, None, "regional", None, ["humanitarian", "displacement"],
     None),
]


def make_rap():
    rnd = random.Random(1325001)
    period = ("2022-01-01", "2030-12-31")
    p = Plan("rap", dict(
        title="Regional Action Plan on Women, Peace and Security 2022-2030",
        summary="The regional framework that member states' National Action Plans report "
                "against: eight regional indicators, aggregated from the member states' own.",
        kind="rap", status="adopted", code="REC-RAP-WPS", orientation="outward",
        period_start=period[0], period_end=period[1], adopted_on="2022-06-19",
        generation=1, owner_id=ORG["regional"],
        tags=["climate", "early-warning", "peace-negotiations", "small-arms"]))
    inds = []
    for i, (code, name, kind, desc) in enumerate(PILLARS):
        pil = p.add("pillar", code=code, name=name, kind=kind, description=desc, position=i + 1)
        obj = p.add("objective", pillar_id=pil, code="RO%d" % (i + 1),
                    title=["Member states advance women's participation in peace and security "
                           "decision-making",
                           "Member states protect women and girls and hold perpetrators of "
                           "sexual violence accountable",
                           "Regional conflict prevention is gender-responsive",
                           "Regional humanitarian and recovery action serves women and girls"][i],
                    position=1)
        out = add_results(p, obj, ("Regional standards adopted and applied by member states",
                                   "Regional guidance, peer reviews and training delivered"),
                          i + 1, 1)
        for a in range(2):
            act = p.add("action", objective_id=obj, result_id=out,
                        code="RA%d.%d" % (i + 1, a + 1),
                        title=["Annual regional peer review of member states' NAP progress",
                               "Regional training of trainers on gender-responsive security",
                               "Regional guidance note on investigating conflict-related sexual "
                               "violence",
                               "Regional roster of women mediators",
                               "Gender indicators in the regional early-warning system",
                               "Regional dialogue on climate, security and gender",
                               "Regional humanitarian gender standby capacity",
                               "Regional fund window for women-led recovery initiatives"][2 * i + a],
                        lead_org_id=ORG["regional"],
                        start_date="2022-07-01", end_date="2030-06-30",
                        status=["ongoing", "completed"][a % 2] if i < 2 else "ongoing",
                        tags=[["peace-negotiations"], ["sgbv-accountability"], ["early-warning",
                              "climate"], ["humanitarian"]][i],
                        position=a + 1)
            budget(p, rnd, act, [2025], "EUR", 2 * i + a)
        for j in (2 * i, 2 * i + 1):
            spec = RAP_INDICATORS[j]
            ind = add_indicator(p, rnd, spec, obj, out, None, period, [2023, 2024, 2025])
            add_reports(p, rnd, ind, spec, [2023, 2024, 2025],
                        ["approved", "approved", "submitted" if j % 3 else None], "regional")
            inds.append(ind)
    p.write()
    return inds


# ---- the National Action Plan of Zedland ------------------------------------------------------

OBJECTIVES = [
    # pillar, title, outcome/output titles
    (0, "Increase women's participation in political and public decision-making",
     ("More women hold elected and appointed office",
      "Women candidates and appointees trained and supported")),
    (0, "Increase women's recruitment, retention and promotion in the armed forces and police",
     ("The security sector is more representative of the population it serves",
      "Gender-responsive recruitment and career policies applied")),
    (0, "Ensure women's meaningful participation in peace negotiations, mediation and local "
        "peace committees",
     ("Women take part in every peace process and local peace committee",
      "Women mediators trained and deployed")),
    (1, "Strengthen the protection of women and girls from sexual and gender-based violence in "
        "conflict-affected areas",
     ("Survivors reach protection services quickly and safely",
      "Gender desks and one-stop centres operate in the affected provinces")),
    (1, "Ensure accountability and access to justice for survivors of conflict-related sexual "
        "violence",
     ("Cases of conflict-related sexual violence are investigated and prosecuted",
      "Investigators, prosecutors and judges trained; legal aid provided")),
    (1, "Make security institutions gender-responsive: codes of conduct, vetting, complaints",
     ("Security institutions prevent and sanction misconduct",
      "Codes of conduct, vetting and complaint mechanisms in place")),
    (2, "Integrate gender analysis into early warning, conflict prevention and the prevention "
        "of violent extremism",
     ("Early-warning and prevention work sees the risks women and girls face",
      "Early-warning monitors and prevention programmes gender-trained")),
    (2, "Reduce the gendered impact of small arms proliferation and climate-related insecurity",
     ("Fewer illicit small arms; climate-security risks to women reduced",
      "Community disarmament and climate-security dialogues held with women")),
    (3, "Ensure that humanitarian response meets the needs of displaced women and girls",
     ("Displaced women and girls receive protection and services",
      "Camps and settlements apply minimum standards on gender and protection")),
    (3, "Promote women's economic recovery and role in reconstruction and transitional justice",
     ("Women benefit from recovery and shape transitional justice",
      "Livelihood grants and truth-commission outreach reach women")),
]

# Per objective: 4 actions (code suffix, title, lead, supporting, status, tags, start, end).
ACTIONS = [
    [("Train women candidates ahead of the 2026 local elections", "mogender", ["wpsnet"],
      "ongoing", ["youth-peace-security"]),
     ("Draft and table a gender quota bill for elected bodies", "mogender", ["parliament"],
      "completed", []),
     ("Mentoring programme for women in senior civil service", "mogender", [], "ongoing", []),
     ("Gender audit of appointments to public boards", "mogender", ["wpsnet"], "delayed", [])],
    [("Revise armed forces recruitment criteria and facilities for women", "defence",
      ["mogender"], "ongoing", ["women-in-armed-forces", "security-sector"]),
     ("Women's network and mentoring in the National Police Service", "police", ["wpsnet"],
      "ongoing", ["women-in-police"]),
     ("Gender advisers in every military region", "defence", [], "planned",
      ["women-in-armed-forces"]),
     ("Recruitment campaign for women police officers", "police", ["mogender"], "completed",
      ["women-in-police"])],
    [("Train and certify women mediators", "mofa", ["wpsnet"], "ongoing",
      ["peace-negotiations"]),
     ("Quota for women in the national peace dialogue delegation", "mofa", ["mogender"],
      "completed", ["peace-negotiations"]),
     ("Support women's participation in local peace committees", "wpsnet", ["mogender"],
      "ongoing", ["peace-negotiations"]),
     ("Consultations with women's organisations before each negotiation round", "mofa",
      ["wpsnet"], "ongoing", ["peace-negotiations"])],
    [("Open police gender desks in the four affected provinces", "police", ["mogender"],
      "ongoing", ["sgbv-accountability", "women-in-police"]),
     ("One-stop centres for survivors of sexual violence", "mogender", ["police", "wpsnet"],
      "ongoing", ["sgbv-accountability"]),
     ("Toll-free SGBV helpline", "mogender", ["wpsnet"], "completed", []),
     ("Safe spaces for women and girls in border communities", "wpsnet", ["mogender"],
      "delayed", ["displacement"])],
    [("Specialised unit for conflict-related sexual violence investigations", "police",
      ["mogender"], "ongoing", ["sgbv-accountability", "transitional-justice"]),
     ("Train prosecutors and judges on conflict-related sexual violence", "mogender",
      ["police"], "ongoing", ["sgbv-accountability"]),
     ("Legal aid for survivors", "wpsnet", ["mogender"], "ongoing", ["sgbv-accountability"]),
     ("Reparations framework for survivors", "mogender", ["mofa"], "planned",
      ["transitional-justice"])],
    [("Code of conduct on sexual exploitation and abuse for all security personnel",
      "defence", ["police"], "completed", ["security-sector"]),
     ("Vetting of security personnel for sexual violence records", "police", ["defence"],
      "delayed", ["security-sector"]),
     ("Independent complaints mechanism for the security sector", "mogender",
      ["police", "defence"], "planned", ["security-sector"]),
     ("Pre-deployment WPS training for peacekeepers", "defence", [], "ongoing",
      ["women-in-armed-forces"])],
    [("Sex-disaggregated indicators in the national early-warning system", "mogender",
      ["police"], "ongoing", ["early-warning"]),
     ("Women early-warning monitors in border communities", "wpsnet", ["mogender"], "ongoing",
      ["early-warning"]),
     ("Gender in the national strategy on preventing violent extremism", "mofa",
      ["mogender"], "completed", ["violent-extremism"]),
     ("Countering technology-facilitated violence against women in public life", "mogender",
      ["police"], "planned", ["cyber"])],
    [("Community weapons collection with women's groups", "police", ["wpsnet"], "ongoing",
      ["small-arms", "disarmament"]),
     ("Gender in the national small arms action plan", "defence", ["mofa"], "completed",
      ["small-arms"]),
     ("Women in climate-security dialogues on land and water", "wpsnet", ["mogender"],
      "ongoing", ["climate"]),
     ("Study on climate-related displacement and gender", "mogender", ["mofa"], "cancelled",
      ["climate", "displacement"])],
    [("Minimum standards on gender and protection in camps", "mogender", ["wpsnet"],
      "ongoing", ["humanitarian", "displacement"]),
     ("Dignity kits and reproductive health services in settlements", "mogender", [],
      "ongoing", ["humanitarian", "health-emergencies"]),
     ("Women's committees in camp management", "wpsnet", ["mogender"], "ongoing",
      ["displacement"]),
     ("Anti-trafficking screening at border crossings", "police", ["mofa"], "ongoing",
      ["trafficking"])],
    [("Livelihood grants for women-headed households in recovery areas", "mogender",
      ["wpsnet"], "ongoing", []),
     ("Women's land and property rights in reconstruction", "mogender", [], "delayed", []),
     ("Truth-commission outreach to women survivors", "wpsnet", ["mogender"], "ongoing",
      ["transitional-justice"]),
     ("Women-led cooperatives in reconstruction procurement", "mogender", ["mofa"], "planned",
      [])],
]

# Per objective: 6 indicators; the last field of a row is the RAP indicator it maps to.
INDICATORS = [
    [("1.1.1", "Share of seats held by women in the National Assembly", "percentage",
      "per cent", 23.5, 35, None, "parliament", "SDG 5.5.1a", None, 40, 1),
     ("1.1.2", "Share of women among cabinet ministers", "percentage", "per cent", 18, 30,
      None, "mogender", None, None, None, None),
     ("1.1.3", "Women candidates trained for local elections", "number", "candidates", 120,
      1500, ["age", "location"], "mogender", None, None, None, None),
     ("1.1.4", "Gender quota law for elected bodies adopted", "yes_no", "yes/no", 0, 1, None,
      "parliament", None, None, None, None),
     ("1.1.5", "Share of women in senior civil service posts", "percentage", "per cent", 27,
      40, None, "mogender", None, None, None, None),
     ("1.1.6", "Women's organisations consulted in national budget hearings", "number",
      "organisations", 4, 25, None, "wpsnet", None, None, None, None)],
    [("1.2.1", "Share of women in the armed forces", "percentage", "per cent", 6.8, 12, None,
      "defence", None, ["women-in-armed-forces"], 18, 5),
     ("1.2.2", "Share of women in the National Police Service", "percentage", "per cent", 14,
      25, None, "police", None, ["women-in-police"], 30, None),
     ("1.2.3", "Women officers promoted to command positions", "number", "officers", 9, 40,
      None, "defence", None, ["women-in-armed-forces"], None, None),
     ("1.2.4", "Police recruits who are women", "number", "recruits", 210, 600,
      ["age", "location"], "police", None, ["women-in-police"], None, None),
     ("1.2.5", "Military bases with separate facilities for women", "percentage", "per cent",
      35, 100, None, "defence", None, ["women-in-armed-forces"], None, None),
     ("1.2.6", "Anti-harassment policy in force in the security sector", "yes_no", "yes/no",
      0, 1, None, "defence", None, ["security-sector"], None, None)],
    [("1.3.1", "Share of women in the national peace dialogue delegation", "percentage",
      "per cent", 8, 35, None, "mofa", None, ["peace-negotiations"], 50, 3),
     ("1.3.2", "Women mediators certified", "number", "mediators", 15, 120, ["location"],
      "mofa", None, ["peace-negotiations"], None, None),
     ("1.3.3", "Share of women in local peace committees", "percentage", "per cent", 17, 40,
      None, "wpsnet", None, ["peace-negotiations"], None, None),
     ("1.3.4", "Negotiation rounds preceded by a consultation of women's organisations",
      "number", "rounds", 0, 12, None, "mofa", None, None, None, None),
     ("1.3.5", "Peace agreements with gender provisions", "number", "agreements", 0, 2, None,
      "mofa", None, None, None, None),
     ("1.3.6", "Young women trained in peacebuilding", "number", "participants", 60, 800,
      ["age", "location"], "wpsnet", None, ["youth-peace-security"], None, None)],
    [("2.1.1", "Police gender desks operating", "number", "desks", 18, 60, ["location"],
      "police", None, ["women-in-police"], None, None),
     ("2.1.2", "Survivors of sexual and gender-based violence assisted at one-stop centres",
      "number", "survivors", 850, 4000, ["age", "location"], "mogender", None,
      ["sgbv-accountability"], None, None),
     ("2.1.3", "Calls answered by the SGBV helpline", "number", "calls", 0, 12000, ["sex"],
      "mogender", None, None, None, None),
     ("2.1.4", "Share of SGBV reports acted on within 72 hours", "percentage", "per cent", 31,
      75, None, "police", None, None, None, None),
     ("2.1.5", "Safe spaces for women and girls in border communities", "number", "spaces", 3,
      20, None, "wpsnet", None, ["displacement"], None, None),
     ("2.1.6", "Police officers trained on survivor-centred case handling", "number",
      "officers", 240, 2000, ["sex"], "police", None, ["women-in-police"], None, 4)],
    [("2.2.1", "Cases of conflict-related sexual violence investigated", "number", "cases",
      40, 300, ["location"], "police", None, ["sgbv-accountability"], None, None),
     ("2.2.2", "Cases of conflict-related sexual violence prosecuted", "number", "cases", 6,
      80, None, "mogender", None, ["sgbv-accountability"], None, None),
     ("2.2.3", "Prosecutors and judges trained on conflict-related sexual violence", "number",
      "people", 35, 300, ["sex"], "mogender", None, None, None, None),
     ("2.2.4", "Survivors receiving legal aid", "number", "survivors", 90, 1200,
      ["age", "location"], "wpsnet", None, ["sgbv-accountability"], None, None),
     ("2.2.5", "Reparations framework for survivors adopted", "yes_no", "yes/no", 0, 1, None,
      "mogender", None, ["transitional-justice"], None, None),
     ("2.2.6", "Share of survivors satisfied with the justice process", "percentage",
      "per cent", 22, 60, None, "wpsnet", None, None, None, None)],
    [("2.3.1", "Security personnel who signed the code of conduct", "percentage", "per cent",
      12, 100, None, "defence", None, ["security-sector"], None, None),
     ("2.3.2", "Personnel vetted for sexual violence records", "number", "personnel", 0,
      15000, ["sex"], "police", None, ["security-sector"], None, None),
     ("2.3.3", "Independent complaints mechanism in operation", "yes_no", "yes/no", 0, 1,
      None, "mogender", None, ["security-sector"], None, None),
     ("2.3.4", "Complaints of misconduct by security personnel received", "number",
      "complaints", 14, 150, ["location"], "mogender", None, None, None, None),
     ("2.3.5", "Peacekeepers with pre-deployment WPS training", "percentage", "per cent", 45,
      100, None, "defence", None, ["women-in-armed-forces"], None, None),
     ("2.3.6", "Share of women among deployed peacekeepers", "percentage", "per cent", 5.2, 15,
      None, "defence", "UNSCR 2538", ["women-in-armed-forces"], 20, 5)],
    [("3.1.1", "Early-warning reports with sex-disaggregated data", "percentage", "per cent",
      0, 90, None, "mogender", None, ["early-warning"], None, 6),
     ("3.1.2", "Women early-warning monitors active", "number", "monitors", 25, 200,
      ["age", "location"], "wpsnet", None, ["early-warning"], None, None),
     ("3.1.3", "National strategy on preventing violent extremism with gender provisions",
      "yes_no", "yes/no", 0, 1, None, "mofa", None, ["violent-extremism"], None, None),
     ("3.1.4", "Prevention programmes with a gender analysis", "number", "programmes", 2, 15,
      None, "mofa", None, ["violent-extremism"], None, None),
     ("3.1.5", "Women public figures reporting online harassment", "percentage", "per cent",
      58, 30, None, "mogender", None, ["cyber"], None, None),
     ("3.1.6", "Early-warning alerts followed by a response within a week", "percentage",
      "per cent", 40, 80, None, "mogender", None, ["early-warning"], None, None)],
    [("3.2.1", "Illicit small arms collected in community programmes", "number", "weapons",
      1200, 9000, ["location"], "police", None, ["small-arms"], None, None),
     ("3.2.2", "National small arms action plan with gender provisions", "yes_no", "yes/no",
      0, 1, None, "defence", None, ["small-arms"], None, 7),
     ("3.2.3", "Women in community disarmament committees", "number", "members", 30, 400,
      ["location"], "wpsnet", None, ["small-arms", "disarmament"], None, None),
     ("3.2.4", "Climate-security dialogues with women's participation", "number", "dialogues",
      2, 30, ["location"], "wpsnet", None, ["climate"], None, None),
     ("3.2.5", "Share of women in land and water dispute resolution bodies", "percentage",
      "per cent", 11, 30, None, "mogender", None, ["climate"], None, None),
     ("3.2.6", "Firearm incidents involving intimate partners reported", "number",
      "incidents", 310, 150, ["location"], "police", None, ["small-arms"], None, None)],
    [("4.1.1", "Camps applying the minimum standards on gender and protection", "percentage",
      "per cent", 20, 100, None, "mogender", None, ["humanitarian", "displacement"], None, 8),
     ("4.1.2", "Displaced women and girls receiving dignity kits", "number", "people", 5000,
      40000, ["age", "location"], "mogender", None, ["humanitarian"], None, None),
     ("4.1.3", "Share of women in camp management committees", "percentage", "per cent", 18,
      50, None, "wpsnet", None, ["displacement"], None, None),
     ("4.1.4", "Suspected trafficking victims identified at border crossings", "number",
      "people", 35, 200, ["sex"], "police", None, ["trafficking"], None, None),
     ("4.1.5", "Settlements with reproductive health services", "percentage", "per cent", 40,
      95, None, "mogender", None, ["health-emergencies"], None, None),
     ("4.1.6", "Share of humanitarian funding targeting women and girls", "percentage",
      "per cent", 8, 20, None, "mogender", None, ["humanitarian"], 25, None)],
    [("4.2.1", "Women-headed households receiving livelihood grants", "number", "households",
      400, 5000, ["location"], "mogender", None, None, None, None),
     ("4.2.2", "Share of reconstruction contracts awarded to women-led enterprises",
      "percentage", "per cent", 3, 15, None, "mogender", None, None, None, None),
     ("4.2.3", "Law guaranteeing women's land and property rights amended", "yes_no",
      "yes/no", 0, 1, None, "mogender", None, None, None, None),
     ("4.2.4", "Women survivors giving statements to the truth commission", "number",
      "people", 0, 2500, ["age"], "wpsnet", None, ["transitional-justice"], None, None),
     ("4.2.5", "Women-led cooperatives registered in recovery areas", "number",
      "cooperatives", 12, 150, ["location"], "mogender", None, None, None, None),
     ("4.2.6", "Share of women among recovery programme beneficiaries", "percentage",
      "per cent", 38, 55, None, "mogender", None, None, None, None)],
]


def statuses(rnd, year_count):
    """Approved, submitted, draft or None (not reported: overdue), per year. (A
    returned report is one a reviewer sent back: it comes from the workflow,
    an import does not create one.)"""
    out = []
    for k in range(year_count):
        r = rnd.random()
        if k == 0:
            out.append("approved" if r < 0.95 else "submitted")
        elif k == 1:
            out.append("approved" if r < 0.8 else "submitted" if r < 0.92 else None)
        else:
            out.append("approved" if r < 0.15 else "submitted" if r < 0.45
                       else "draft" if r < 0.65 else None)
    return out


def make_nap_zz(rap_inds):
    rnd = random.Random(1325)
    period = ("2023-01-01", "2027-12-31")
    years = [2023, 2024, 2025]
    p = Plan("nap-zz", dict(
        title="Zedland National Action Plan on Women, Peace and Security 2023-2027",
        summary="Zedland's second National Action Plan on UNSCR 1325 and its successor "
                "resolutions: participation, protection, prevention, relief and recovery, "
                "coordinated by the Ministry of Gender Equality and Social Protection with "
                "the ministries, the security sector and civil society.",
        kind="nap", status="adopted", code="ZZ-NAP-II", country="ZZ", orientation="both",
        period_start=period[0], period_end=period[1], adopted_on="2023-03-08", generation=2,
        owner_id=ORG["mogender"],
        tags=["climate", "displacement", "early-warning", "peace-negotiations",
              "sgbv-accountability", "small-arms", "women-in-armed-forces", "women-in-police"]))
    pillars = []
    for i, (code, name, kind, desc) in enumerate(PILLARS):
        pillars.append(p.add("pillar", code=code, name=name, kind=kind, description=desc,
                             position=i + 1))
    per_pillar = {}
    k = 0
    for o, (pil, title, results) in enumerate(OBJECTIVES):
        per_pillar[pil] = per_pillar.get(pil, 0) + 1
        ocode = "%d.%d" % (pil + 1, per_pillar[pil])
        obj = p.add("objective", pillar_id=pillars[pil], code=ocode, title=title,
                    position=per_pillar[pil])
        out = add_results(p, obj, results, o + 1, 1)
        acts = []
        for a, (atitle, lead, support, status, tags) in enumerate(ACTIONS[o]):
            start = ["2023-01-01", "2023-07-01", "2024-01-01", "2025-01-01"][a]
            end = "2027-12-31" if status != "completed" else "2025-12-31"
            act = p.add("action", objective_id=obj, result_id=out, code="%s.%d" % (ocode, a + 1),
                        title=atitle,
                        description="Led by the %s%s." % (
                            reporter_name(lead),
                            "" if not support else ", with " + " and ".join(
                                reporter_name(s) for s in support)),
                        lead_org_id=ORG[lead],
                        supporting_org_ids=sorted(ORG[s] for s in support) or None,
                        start_date=start, end_date=end, status=status, tags=tags or None,
                        position=a + 1)
            acts.append(act)
            fys = [2024, 2025] if k < 16 else [2025]
            budget(p, rnd, act, fys, "ZZD", k)
            k += 1
        for j, row in enumerate(INDICATORS[o]):
            spec, rap = row[:11], row[11]
            ind = add_indicator(p, rnd, spec, obj, out, acts[j % 4], period, years,
                                regional=rap_inds[rap - 1] if rap else None)
            add_reports(p, rnd, ind, spec, years, statuses(rnd, 3), spec[7])
    p.write()
    return p.id


# ---- implementation plans -------------------------------------------------------------------

def make_implementation(key, nap_id, owner, title, code, summary, pillars, items):
    """items per pillar: list of (objective title, [(action, indicator spec)...])."""
    rnd = random.Random(sum(key.encode()))
    period = ("2024-01-01", "2027-12-31")
    years = [2024, 2025]
    p = Plan(key, dict(
        title=title, summary=summary, kind="implementation", status="adopted", code=code,
        country="ZZ", orientation="inward", period_start=period[0], period_end=period[1],
        adopted_on="2024-02-15", generation=1, owner_id=ORG[owner], implements_id=nap_id,
        tags=sorted({t for objs in items for _, acts in objs for _, s in acts for t in
                     (s[9] or [])})))
    pos = 0
    for i, pil_no in enumerate(pillars):
        code_, name, kind, desc = PILLARS[pil_no]
        pil = p.add("pillar", code=code_, name=name, kind=kind, description=desc,
                    position=i + 1)
        for o, (otitle, acts) in enumerate(items[i]):
            pos += 1
            obj = p.add("objective", pillar_id=pil, code="%s.%d" % (code_, o + 1),
                        title=otitle, position=o + 1)
            for a, (atitle, spec) in enumerate(acts):
                act = p.add("action", objective_id=obj, code="%s.%d.%d" % (code_, o + 1, a + 1),
                            title=atitle, lead_org_id=ORG[owner],
                            start_date="2024-01-01", end_date="2027-12-31",
                            status=["ongoing", "planned", "completed"][(pos + a) % 3],
                            tags=spec[9], position=a + 1)
                budget(p, rnd, act, [2025], "ZZD", pos + a)
                ind = add_indicator(p, rnd, spec, obj, None, act, period, years)
                add_reports(p, rnd, ind, spec, years,
                            [["approved", "submitted"], ["approved", None],
                             ["submitted", "draft"]][(pos + a) % 3], owner)
    p.write()


def make_defence(nap_id):
    make_implementation(
        "dap-defence", nap_id, "defence",
        "Defence Action Plan on Women, Peace and Security 2024-2027", "ZZ-MOD-DAP",
        "How the Ministry of Defence and the armed forces implement their part of the "
        "National Action Plan.",
        [0, 1],
        [[("Women serve at every rank of the armed forces",
           [("Open all combat and technical trades to women",
             ("D1.1", "Trades open to women", "percentage", "per cent", 70, 100, None,
              "defence", None, ["women-in-armed-forces"], None)),
            ("Barracks accommodation and equipment for women",
             ("D1.2", "Bases with accommodation for women", "number", "bases", 11, 30,
              None, "defence", None, ["women-in-armed-forces"], None))]),
          ("Women lead in the armed forces",
           [("Leadership course places reserved for women officers",
             ("D1.3", "Women officers completing the staff course", "number", "officers", 6,
              40, ["age"], "defence", None, ["women-in-armed-forces"], None))])],
         [("Zero tolerance of sexual exploitation and abuse",
           [("Code of conduct briefings for every unit",
             ("D2.1", "Units briefed on the code of conduct", "percentage", "per cent", 30,
              100, None, "defence", None, ["security-sector"], None)),
            ("Gender advisers in military regions",
             ("D2.2", "Military regions with a gender adviser", "number", "regions", 1, 6,
              None, "defence", None, ["security-sector"], None)),
            ("Pre-deployment training on conflict-related sexual violence",
             ("D2.3", "Soldiers trained before deployment", "number", "soldiers", 400, 3000,
              ["sex"], "defence", None, ["sgbv-accountability"], None))])]])


def make_police(nap_id):
    make_implementation(
        "iap-police", nap_id, "police",
        "National Police Service Implementation Plan for the NAP on WPS 2024-2027",
        "ZZ-NPS-IAP",
        "The National Police Service's plan for recruiting women, gender desks and "
        "survivor-centred investigations under the National Action Plan.",
        [0, 1],
        [[("More women join and stay in the police",
           [("Targeted recruitment drives in all provinces",
             ("N1.1", "Women recruited", "number", "recruits", 210, 700, ["location"],
              "police", None, ["women-in-police"], None)),
            ("Women police officers' association supported",
             ("N1.2", "Members of the women police officers' association", "number",
              "members", 300, 1200, None, "police", None, ["women-in-police"], None))])],
         [("Every district has a working gender desk",
           [("Equip and staff gender desks",
             ("N2.1", "Districts with a staffed gender desk", "percentage", "per cent", 25, 90,
              None, "police", None, ["sgbv-accountability"], None)),
            ("Train investigators in survivor-centred interviews",
             ("N2.2", "Investigators trained", "number", "investigators", 80, 600, ["sex"],
              "police", None, ["sgbv-accountability"], None))]),
          ("Illicit small arms taken out of circulation",
           [("Gender-sensitive community weapons collection",
             ("N2.3", "Community collection events with women's groups", "number", "events",
              4, 40, ["location"], "police", None, ["small-arms"], None))])]])


# ---- member states' NAPs -------------------------------------------------------------------

def make_member_nap(key, owner, country, name, adopted, rap_inds, seed):
    rnd = random.Random(seed)
    period = ("2022-01-01", "2026-12-31")
    years = [2023, 2024, 2025]
    p = Plan(key, dict(
        title="%s National Action Plan on Women, Peace and Security 2022-2026" % name,
        summary="The first National Action Plan of %s on UNSCR 1325, aligned with the "
                "Regional Action Plan." % name,
        kind="nap", status="adopted", code="%s-NAP-I" % country, country=country,
        orientation="inward", period_start=period[0], period_end=period[1],
        adopted_on=adopted, generation=1, owner_id=ORG[owner],
        tags=["early-warning", "peace-negotiations", "sgbv-accountability"]))
    specs = [
        [("%s1" % country, "Share of seats held by women in parliament", "percentage",
          "per cent", 19 + seed % 5, 30, None, owner, "SDG 5.5.1a", None, None, 2),
         ("%s2" % country, "Women in national mediation teams", "number", "mediators", 3, 25,
          None, owner, None, ["peace-negotiations"], None, 3)],
        [("%s3" % country, "Police units specialised in sexual and gender-based violence",
          "number", "units", 0, 8, None, owner, None, ["sgbv-accountability"], None, 4),
         ("%s4" % country, "Share of women in the armed forces", "percentage", "per cent",
          6 + seed % 3, 12, None, owner, None, ["women-in-armed-forces"], None, 5)],
        [("%s5" % country, "Early-warning system reports sex-disaggregated data", "yes_no",
          "yes/no", 0, 1, None, owner, None, ["early-warning"], None, 6),
         ("%s6" % country, "Small arms strategy with gender provisions", "yes_no", "yes/no", 0,
          1, None, owner, None, ["small-arms"], None, 7)],
        [("%s7" % country, "Displaced women receiving protection services", "number", "people",
          500, 6000, ["age"], owner, None, ["displacement"], None, None),
         ("%s8" % country, "Share of humanitarian funding targeting women and girls",
          "percentage", "per cent", 7, 18, None, owner, None, ["humanitarian"], None, 8)],
    ]
    titles = [
        ("Women take part in decision-making on peace and security",
         ["Women candidates' leadership programme", "Women mediators' network"]),
        ("Survivors of sexual violence are protected and obtain justice",
         ["Specialised police units for SGBV", "Gender policy for the armed forces"]),
        ("Prevention of conflict takes women's security into account",
         ["Gender indicators in early warning", "Gender in small arms control"]),
        ("Humanitarian action reaches displaced women and girls",
         ["Protection services in displacement sites", "Gender tracking of humanitarian funds"]),
    ]
    for i, (code, pname, kind, desc) in enumerate(PILLARS):
        pil = p.add("pillar", code=code, name=pname, kind=kind, description=desc,
                    position=i + 1)
        otitle, atitles = titles[i]
        obj = p.add("objective", pillar_id=pil, code="%d" % (i + 1), title=otitle, position=1)
        for a, atitle in enumerate(atitles):
            act = p.add("action", objective_id=obj, code="%d.%d" % (i + 1, a + 1), title=atitle,
                        lead_org_id=ORG[owner], start_date="2022-07-01", end_date="2026-12-31",
                        status=["ongoing", "delayed", "completed", "planned"][(i + a) % 4],
                        position=a + 1)
            budget(p, rnd, act, [2025], {"XA": "XAD", "XB": "XBF"}[country], 2 * i + a)
            row = specs[i][a]
            spec, rap = row[:11], row[11]
            ind = add_indicator(p, rnd, spec, obj, None, act, period, years,
                                regional=rap_inds[rap - 1] if rap else None)
            add_reports(p, rnd, ind, spec, years, statuses(rnd, 3), owner)
    p.write()


def main():
    rap_inds = make_rap()
    nap = make_nap_zz(rap_inds)
    make_member_nap("nap-xa", "xa-women", "XA", "Xandria", "2022-03-08", rap_inds, 21)
    make_member_nap("nap-xb", "xb-gender", "XB", "Xebonia", "2022-10-31", rap_inds, 34)
    make_defence(nap)
    make_police(nap)


if __name__ == "__main__":
    main()
