//! A patient's earlier ECGs from any clinic in the county. Patient fields are sealed at rest, so
//! studies are found by keyed hashes ([`super::sealed::StoreKey::blind_index`]) of the patient
//! identifier and of name with birth date, then the candidates are opened and compared.
//!
//! Township clinics often number patients locally ("0001"), so an identifier shared across
//! clinics can belong to two people: a study counts as the same patient only when the
//! identifier matches and the names agree; an identifier match with another name, or a match on
//! name and birth date alone, is shown as "possible" and never feeds the "new since last ECG"
//! note.

use super::sql::{OptionalExtension, params};
use super::{Db, STUDY_COLUMNS, StoreError, StudyRow, sealed::StoreKey, sealed_text, study_row};
use serde::Serialize;

/// How sure the match of a prior study is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PriorMatch {
    /// Same patient identifier and the same name (or one side has no name).
    Same,
    /// Same name and birth date, but no identifier or another one.
    NameAndBirth,
    /// Same identifier, another name: a local number reused by another clinic, or a typo.
    IdOnly,
}

impl PriorMatch {
    /// Whether the match is certain enough to compare the pre-reads.
    pub fn certain(self) -> bool {
        self == PriorMatch::Same
    }
}

/// One earlier ECG of the patient.
#[derive(Debug, Clone, Serialize)]
pub struct Prior {
    /// The earlier study.
    pub row: StudyRow,
    /// How it matched.
    pub matched: PriorMatch,
    /// Its report's conclusion, once reported.
    pub conclusion: Option<String>,
}

/// The identifier as compared: no spaces or hyphens, upper case (an ID card's check digit x).
fn normal_id(id: &str) -> String {
    id.chars().filter(|c| !c.is_whitespace() && *c != '-').flat_map(char::to_uppercase).collect()
}

/// The name as compared: no spaces of any width (王 芳, 王　芳), lower case for Latin names.
fn normal_name(name: &str) -> String {
    name.chars().filter(|c| !c.is_whitespace()).flat_map(char::to_lowercase).collect()
}

/// The keyed hashes of a study's patient: (identifier, name with birth date), '' when missing.
pub fn indexes(key: &StoreKey, id: &str, name: &str, birth_date: Option<&str>) -> Result<(String, String), StoreError> {
    let id = normal_id(id);
    let name = normal_name(name);
    let patient = if id.is_empty() { String::new() } else { key.blind_index("patient id", &id)? };
    let person = match birth_date {
        Some(b) if !name.is_empty() && !b.trim().is_empty() => {
            key.blind_index("patient name and birth date", &format!("{name}\0{}", b.trim()))?
        }
        _ => String::new(),
    };
    Ok((patient, person))
}

impl Db {
    /// Fills the patient indexes of studies stored before they existed. Returns how many.
    pub(super) fn index_patients(&mut self) -> Result<usize, StoreError> {
        // Read first: every open (the hub, each CLI command) would otherwise take the write lock
        // for nothing once every study is indexed.
        let missing: bool =
            self.conn
                .query_row("SELECT EXISTS (SELECT 1 FROM studies WHERE patient_index IS NULL)", [], |r| r.get(0))?;
        if !missing {
            return Ok(0);
        }
        let tx = self.conn.transaction()?;
        let rows: Vec<(String, String, String, Option<String>)> = {
            let mut stmt = tx.prepare(
                "SELECT study_uid, patient_id, patient_name, birth_date FROM studies WHERE patient_index IS NULL",
            )?;
            stmt.query_map([], |r| {
                let uid: String = r.get(0)?;
                let id = sealed_text(&self.key, r, 1, "studies", "patient_id", &uid)?;
                let name = sealed_text(&self.key, r, 2, "studies", "patient_name", &uid)?;
                let birth = super::sealed_text_opt(&self.key, r, 3, "studies", "birth_date", &uid)?;
                Ok((uid, id, name, birth))
            })?
            .collect::<Result<_, _>>()?
        };
        for (uid, id, name, birth) in &rows {
            let (patient, person) = indexes(&self.key, id, name, birth.as_deref())?;
            tx.execute(
                "UPDATE studies SET patient_index = ?2, person_index = ?3 WHERE study_uid = ?1",
                params![uid, patient, person],
            )?;
        }
        tx.commit()?;
        Ok(rows.len())
    }

    /// The ECGs of the same patient acquired before study `uid`, newest first, at most `limit`.
    pub fn priors(&self, uid: &str, now_ms: i64, limit: usize) -> Result<Vec<Prior>, StoreError> {
        // The row only: the waveforms are not needed to know who the patient is.
        let this: Option<(StudyRow, String, String)> = self
            .conn
            .query_row(
                &format!(
                    "SELECT {STUDY_COLUMNS}, coalesce(patient_index, ''), coalesce(person_index, '')
                     FROM studies WHERE study_uid = ?1"
                ),
                [uid],
                |r| Ok((study_row(&self.key, r, now_ms)?, r.get(22)?, r.get(23)?)),
            )
            .optional()?;
        let Some((me, patient, person)) = this else { return Ok(Vec::new()) };
        if patient.is_empty() && person.is_empty() {
            return Ok(Vec::new());
        }
        let acquired_at_ms = me.acquired_at_ms;
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {STUDY_COLUMNS} FROM studies
             WHERE study_uid != ?1 AND acquired_at_ms <= ?2
               AND ((?3 != '' AND patient_index = ?3) OR (?4 != '' AND person_index = ?4))
             ORDER BY acquired_at_ms DESC, study_uid"
        ))?;
        let rows = stmt
            .query_map(params![uid, acquired_at_ms, patient, person], |r| study_row(&self.key, r, now_ms))?
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::new();
        for row in rows.into_iter().take(limit) {
            let same_id = !me.patient_id.trim().is_empty() && normal_id(&row.patient_id) == normal_id(&me.patient_id);
            let (a, b) = (normal_name(&row.patient_name), normal_name(&me.patient_name));
            let same_name = a == b || a.is_empty() || b.is_empty();
            let matched = match (same_id, same_name) {
                (true, true) => PriorMatch::Same,
                (true, false) => PriorMatch::IdOnly,
                (false, _) => PriorMatch::NameAndBirth,
            };
            let conclusion = self.conclusion_of(&row.study_uid)?;
            out.push(Prior { row, matched, conclusion });
        }
        Ok(out)
    }

    /// The conclusion of study `uid`'s report, once reported.
    pub fn conclusion_of(&self, uid: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT report_id, conclusion FROM reports WHERE study_uid = ?1", [uid], |r| {
                let id: String = r.get(0)?;
                sealed_text(&self.key, r, 1, "reports", "conclusion", &id)
            })
            .optional()?)
    }

    /// The pre-read summary (JSON) of study `uid`, once computed.
    pub fn preread_summary(&self, uid: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT preread_summary FROM studies WHERE study_uid = ?1", [uid], |r| r.get(0))
            .optional()?
            .flatten())
    }

    /// Records the pre-read summary (JSON) of study `uid`.
    pub fn set_preread_summary(&mut self, uid: &str, json: &str) -> Result<(), StoreError> {
        self.conn.execute("UPDATE studies SET preread_summary = ?2 WHERE study_uid = ?1", params![uid, json])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_names_compare_as_people_write_them() {
        assert_eq!(normal_id(" 110101-19900101 123x "), "11010119900101123X");
        assert_eq!(normal_name("王 芳"), normal_name("王芳"));
        assert_eq!(normal_name("王\u{3000}芳"), "王芳");
        assert_eq!(normal_name("Li Ming"), normal_name("li ming"));
        assert_ne!(normal_name("买买提·艾力"), normal_name("买买提艾力"));
    }
}
