/* The napsync-1 dictionary (zdict.h). zstd reaches the end of a raw
 * dictionary with the shortest offsets: the most frequent words come last.
 * NEVER EDIT: peers of every version must hold the same bytes. */
#include "zdict.h"

const char ns_zdict_1[] =
    /* values of the vocabularies (sql/003, sql/009) */
    "ministry agency armed_forces police cso local_government regional_organisation parliament "
    "donor admin coordinator implementer regional observer national_budget donor_basket_fund "
    "other_fund USD EUR GBP KES UGX annual quarterly biannual monthly once sex age location "
    "disability female male other 18-24 25-34 35+ urban rural planned ongoing completed delayed "
    "cancelled outcome output participation protection prevention relief_recovery "
    "plan-specific nap rap local implementation inward outward adopted archived returned "
    "number percentage yes_no text submitted approved draft "
    /* entity types */
    "organisation principal principal_role device region_membership pillar objective result "
    "action indicator_target report_value budget_line comment plan indicator indicator_report "
    /* field names, the rarest first */
    "adopted_on fingerprint revoked_reason revoked default_role since role orientation generation "
    "predecessor_id implements_id global_indicator regional_indicator_id supporting_org_ids "
    "subject_type subject_id author_id body note position level parent_id description "
    "verification frequency disaggregation definition unit baseline_date baseline target_date "
    "target corrects_id return_reason reporter_id evidence narrative value_text dimension "
    "category funder_id funding_source gender_responsive fiscal_year currency costed allocated "
    "disbursed spent lead_org_id start_date end_date code name kind country owner_id summary "
    "tags organisation_id region_id pillar_id objective_id result_id action_id report_id "
    "responsible_id indicator_id value_type title status period_start period_end value plan_id "
    /* what every record carries: dates, times, UUIDs' fixed digits */
    "2024-01-01 2024-12-31 2025-01-01 2025-12-31 2026-01-01 2026-12-31T00:00:00.000000Z "
    "-4000-8000-00000000000 -4000-8000- -4000-9 -4000-a -4000-b ";

const size_t ns_zdict_1_len = sizeof(ns_zdict_1) - 1;
