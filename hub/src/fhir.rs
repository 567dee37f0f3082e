//! A study as FHIR R4 JSON, for the provincial platforms that ask for FHIR: a `collection`
//! Bundle of the Patient, the ECG as an Observation with one SampledData component per lead
//! (µV, the sampling period in ms), one Observation per measurement with UCUM units, and, once
//! reported, the DiagnosticReport with the specialist's conclusion.

use crate::hl7::message::vitals;
use crate::store::StudyRow;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use yilian_protocol::message::{Report, Study};

const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";
/// ISO/IEEE 11073-10101 (MDC) nomenclature.
const MDC: &str = "urn:oid:2.16.840.1.113883.6.24";

/// A stable `urn:uuid:` for one resource of one study.
fn urn(study_uid: &str, what: &str) -> String {
    let h = Sha256::digest(format!("yilian-fhir\0{study_uid}\0{what}").as_bytes());
    let mut b: [u8; 16] = [0; 16];
    b.copy_from_slice(&h[..16]);
    // RFC 4122 version 8 (custom) and variant bits, so it is a well-formed UUID.
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!("urn:uuid:{}-{}-{}-{}-{}", &x[..8], &x[8..12], &x[12..16], &x[16..20], &x[20..])
}

/// The MDC code of a standard lead.
fn mdc_lead(name: &str) -> Option<(u32, &'static str)> {
    Some(match name {
        "I" => (131_329, "MDC_ECG_LEAD_I"),
        "II" => (131_330, "MDC_ECG_LEAD_II"),
        "III" => (131_389, "MDC_ECG_LEAD_III"),
        "aVR" | "AVR" => (131_390, "MDC_ECG_LEAD_AVR"),
        "aVL" | "AVL" => (131_391, "MDC_ECG_LEAD_AVL"),
        "aVF" | "AVF" => (131_392, "MDC_ECG_LEAD_AVF"),
        "V1" => (131_331, "MDC_ECG_LEAD_V1"),
        "V2" => (131_332, "MDC_ECG_LEAD_V2"),
        "V3" => (131_333, "MDC_ECG_LEAD_V3"),
        "V4" => (131_334, "MDC_ECG_LEAD_V4"),
        "V5" => (131_335, "MDC_ECG_LEAD_V5"),
        "V6" => (131_336, "MDC_ECG_LEAD_V6"),
        _ => return None,
    })
}

/// FHIR `dateTime` at China Standard Time (null when out of range).
fn datetime(ms: i64) -> Value {
    match crate::export::local_format(ms, "%Y-%m-%dT%H:%M:%S+08:00") {
        t if t.is_empty() => Value::Null,
        t => Value::String(t),
    }
}

/// The Bundle of `study` (and its `report`, if signed).
pub fn bundle(row: &StudyRow, study: &Study, report: Option<&Report>) -> Result<Value, String> {
    let uid = &row.study_uid;
    let (patient, ecg) = (urn(uid, "patient"), urn(uid, "ecg"));
    let subject = json!({ "reference": patient });
    let mut components = Vec::new();
    for lead in &study.leads {
        let samples = lead.decode().map_err(|e| format!("lead {}: {e}", lead.lead))?;
        let data: Vec<String> = samples.iter().map(i32::to_string).collect();
        let mut coding = json!({ "text": lead.lead });
        if let Some((code, display)) = mdc_lead(&lead.lead) {
            coding["coding"] = json!([{ "system": MDC, "code": code.to_string(), "display": display }]);
        }
        components.push(json!({
            "code": coding,
            "valueSampledData": {
                "origin": { "value": 0, "unit": "µV", "system": UCUM, "code": "uV" },
                "period": 1000.0 / f64::from(study.sample_rate_hz.max(1)),
                "factor": lead.resolution_nv / 1000.0,
                "dimensions": 1,
                "data": data.join(" "),
            },
        }));
    }
    let mut entries = vec![
        json!({ "fullUrl": patient, "resource": {
            "resourceType": "Patient",
            "identifier": [{ "system": format!("urn:yilian:site:{}", row.site_id), "value": row.patient_id }],
            "name": [{ "text": row.patient_name }],
            "gender": match row.sex.as_str() { "female" | "male" => row.sex.as_str(), _ => "unknown" },
            "birthDate": row.birth_date,
        }}),
        json!({ "fullUrl": ecg, "resource": {
            "resourceType": "Observation",
            "identifier": [{ "system": "urn:yilian:study", "value": uid }],
            "status": "final",
            "code": { "coding": [{ "system": LOINC, "code": "11524-6", "display": "EKG study" }] },
            "subject": subject,
            "effectiveDateTime": datetime(row.acquired_at_ms),
            "device": { "display": study.device_model },
            "note": if row.question.is_empty() { Value::Null } else { json!([{ "text": row.question }]) },
            "component": components,
        }}),
    ];
    let mut results = vec![json!({ "reference": ecg })];
    for v in vitals(&study.measurements) {
        let id = urn(uid, v.loinc);
        results.push(json!({ "reference": id }));
        entries.push(json!({ "fullUrl": id, "resource": {
            "resourceType": "Observation",
            "status": "final",
            "code": { "coding": [{ "system": LOINC, "code": v.loinc, "display": v.name }] },
            "subject": subject,
            "effectiveDateTime": datetime(row.acquired_at_ms),
            "valueQuantity": { "value": v.value, "unit": v.unit, "system": UCUM, "code": v.unit },
            "derivedFrom": [{ "reference": ecg }],
        }}));
    }
    if let Some(r) = report {
        entries.push(json!({ "fullUrl": urn(uid, "report"), "resource": {
            "resourceType": "DiagnosticReport",
            "identifier": [{ "system": "urn:yilian:report", "value": r.report_id }],
            "status": "final",
            "code": { "coding": [{ "system": LOINC, "code": "11524-6", "display": "EKG study" }] },
            "subject": subject,
            "effectiveDateTime": datetime(row.acquired_at_ms),
            "issued": datetime(r.reported_at_ms),
            "performer": [{ "identifier": { "value": r.specialist_id }, "display": r.specialist_name }],
            "result": results,
            "conclusion": if r.findings.is_empty() { r.conclusion.clone() } else { format!("{}\n{}", r.findings, r.conclusion) },
        }}));
    }
    // Absent values are left out, as FHIR wants, rather than sent as null.
    for e in &mut entries {
        if let Some(obj) = e["resource"].as_object_mut() {
            obj.retain(|_, v| !v.is_null());
        }
    }
    Ok(
        json!({ "resourceType": "Bundle", "type": "collection", "timestamp": datetime(crate::clock::now_ms()), "entry": entries }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_ids_are_stable_uuids() {
        let a = urn("s-1", "ecg");
        assert_eq!(a, urn("s-1", "ecg"));
        assert_ne!(a, urn("s-2", "ecg"));
        let hex = a.trim_start_matches("urn:uuid:");
        assert_eq!(hex.split('-').map(str::len).collect::<Vec<_>>(), [8, 4, 4, 4, 12]);
        assert_eq!(&hex[14..15], "8", "version 8");
    }
}
