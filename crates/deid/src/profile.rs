//! [`Profile`]: one configured profile as a pipeline [`Transform`], and [`Profiles`], all of
//! them by name.
//!
//! What `apply` does to one observation, in this order:
//! 1. `drop_fields`: the listed parts go.
//! 2. Date shift: every date-time ([`Observation::date_times_mut`]) moves by the patient's
//!    offset with [`DateTime::shift_days`](medgate_core::DateTime::shift_days) (precision
//!    and written offset kept: a time shifted across a DST change keeps its offset, as it
//!    is a fixed-offset time), so every interval within a patient's record is kept.
//! 3. `truncate_to`.
//! 4. `drop_free_text`.
//! 5. Warnings are redacted (quoted text, dates and ids) whenever the profile changes
//!    anything.
//! 6. Pseudonyms: the observation id, literal references, every remaining occurrence of the
//!    patient id in text, and finally `patient_id` itself.
//!
//! The per-patient secrets (pseudonym and shift: two HMACs) are computed once and cached;
//! observations of one fetch share one `Arc<str>` patient id, so the common case is a pointer
//! comparison under an uncontended lock. The cache is bounded ([`CACHE_PATIENTS`]) and simply
//! cleared when full: rows arrive grouped by patient, so a cohort of any size still costs
//! about one derivation per patient.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use medgate_core::{ConfigIssue, ConfigIssues, Observation, Precision, Reference};
use medgate_pipeline::Transform;

use crate::config::{label, parse_profiles, DropField, ProfileConfig};
use crate::key::{prefixed, uuid_urn, PseudonymKey, REFERENCE_PREFIX};
use crate::text;
use crate::Error;

/// Patients whose secrets are cached at once per profile.
pub const CACHE_PATIENTS: usize = 4096;

/// A patient's derived secrets.
#[derive(Debug)]
struct Secrets {
    pseudonym: Option<Arc<str>>,
    shift: i32,
}

#[derive(Default)]
struct Cache {
    last: Option<(Arc<str>, Arc<Secrets>)>,
    map: HashMap<Arc<str>, Arc<Secrets>>,
}

/// One de-identification profile, ready to apply.
pub struct Profile {
    config: ProfileConfig,
    key: Option<PseudonymKey>,
    truncate: Option<Precision>,
    drop: HashSet<DropField>,
    cache: Mutex<Cache>,
    derived: AtomicU64,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("config", &self.config)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Profile {
    /// The profile `config` with its key (`None` is accepted only when the profile neither
    /// pseudonymizes nor shifts dates; a key it does not need is dropped).
    ///
    /// # Errors
    /// [`Error::KeyRequired`].
    pub fn new(config: ProfileConfig, key: Option<PseudonymKey>) -> Result<Profile, Error> {
        let key = if config.needs_key() {
            Some(key.ok_or_else(|| Error::KeyRequired {
                profile: config.name.clone(),
            })?)
        } else {
            None
        };
        Ok(Profile {
            truncate: config.truncate_to.map(|t| t.precision()),
            drop: config.drop_fields.iter().copied().collect(),
            config,
            key,
            cache: Mutex::new(Cache::default()),
            derived: AtomicU64::new(0),
        })
    }

    /// The profile's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Its configuration.
    pub fn config(&self) -> &ProfileConfig {
        &self.config
    }

    /// The key's public fingerprint ([`PseudonymKey::key_id`]) for the audit trail and job
    /// manifests; `None` when the profile has no key.
    pub fn key_id(&self) -> Option<String> {
        self.key.as_ref().map(PseudonymKey::key_id)
    }

    /// The pseudonym that replaces `patient_id`, when the profile pseudonymizes.
    pub fn pseudonym(&self, patient_id: &str) -> Option<Arc<str>> {
        if !self.config.pseudonymize_patient_ids {
            return None;
        }
        self.secrets(patient_id, || Arc::from(patient_id))
            .and_then(|s| s.pseudonym.clone())
    }

    /// The patient id to show wherever output names the patient outside the observations
    /// (an answer's `patient_id`, a job's per-patient errors): the pseudonym, or the id.
    pub fn output_patient_id<'a>(&self, patient_id: &'a str) -> Cow<'a, str> {
        match self.pseudonym(patient_id) {
            Some(p) => Cow::Owned(p.to_string()),
            None => Cow::Borrowed(patient_id),
        }
    }

    /// The patient's date shift in days (0 when the profile does not shift dates).
    pub fn date_shift_days(&self, patient_id: &str) -> i32 {
        self.secrets(patient_id, || Arc::from(patient_id))
            .map_or(0, |s| s.shift)
    }

    /// How many patients' secrets were derived so far (cache misses), for tests and metrics.
    pub fn derivations(&self) -> u64 {
        self.derived.load(Ordering::Relaxed)
    }

    /// Whether anything in the record changes.
    pub fn is_identity(&self) -> bool {
        self.config.is_identity()
    }

    /// The cached secrets of `patient_id` (`make` gives the cache key on a miss).
    fn secrets(&self, patient_id: &str, make: impl FnOnce() -> Arc<str>) -> Option<Arc<Secrets>> {
        let key = self.key.as_ref()?;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((id, secrets)) = &cache.last {
            if **id == *patient_id {
                return Some(secrets.clone());
            }
        }
        let found = cache
            .map
            .get_key_value(patient_id)
            .map(|(id, s)| (id.clone(), s.clone()));
        let (id, secrets) = match found {
            Some(hit) => hit,
            None => {
                let id = make();
                let secrets = Arc::new(self.derive(key, patient_id));
                if cache.map.len() >= CACHE_PATIENTS {
                    cache.map.clear();
                }
                cache.map.insert(id.clone(), secrets.clone());
                (id, secrets)
            }
        };
        cache.last = Some((id, secrets.clone()));
        Some(secrets)
    }

    fn derive(&self, key: &PseudonymKey, patient_id: &str) -> Secrets {
        self.derived.fetch_add(1, Ordering::Relaxed);
        Secrets {
            pseudonym: self
                .config
                .pseudonymize_patient_ids
                .then(|| Arc::from(key.patient_pseudonym(patient_id))),
            shift: key.date_shift(patient_id, self.config.date_shift_max_days),
        }
    }

    fn drop_fields(&self, o: &mut Observation) {
        for field in &self.drop {
            match field {
                DropField::Category => o.category.clear(),
                DropField::Issued => o.issued = None,
                DropField::Interpretation => {
                    o.interpretation.clear();
                    o.components
                        .iter_mut()
                        .for_each(|c| c.interpretation.clear());
                }
                DropField::ReferenceRange => {
                    o.reference_range.clear();
                    o.components
                        .iter_mut()
                        .for_each(|c| c.reference_range.clear());
                }
                DropField::HasMember => o.has_member.clear(),
                DropField::DerivedFrom => o.derived_from.clear(),
                DropField::Device => o.device = None,
                DropField::Warnings => o.warnings.clear(),
            }
        }
    }

    fn pseudonymize(&self, key: &PseudonymKey, o: &mut Observation, pseudonym: &Arc<str>) {
        let patient = o.patient_id.clone();
        o.id = key.observation_id(&o.source, &patient, &o.id);
        let source = o.source.clone();
        let refs = o
            .has_member
            .iter_mut()
            .chain(o.derived_from.iter_mut())
            .chain(o.device.iter_mut());
        for r in refs {
            self.pseudonymize_reference(key, &source, &patient, pseudonym, r);
        }
        text::for_each_text(o, &mut |t| text::replace_id(t, &patient, pseudonym));
        o.patient_id = pseudonym.clone();
    }

    /// `Type/id` (relative or at the end of an absolute URL; `_history` dropped) keeps its
    /// type with a pseudonymous id: a patient's pseudonym, an observation's pseudonymous id
    /// (so `hasMember` still points at the member's new id), or `ref-…`. Anything else
    /// (`urn:uuid:…`, `#contained`, other URLs) becomes a `urn:uuid:` derived from it.
    fn pseudonymize_reference(
        &self,
        key: &PseudonymKey,
        source: &str,
        patient: &str,
        pseudonym: &Arc<str>,
        r: &mut Reference,
    ) {
        let Some(target) = r.reference.as_deref() else {
            return;
        };
        let path = target.split("/_history/").next().unwrap_or(target);
        let mut parts = path.rsplit('/');
        let (id, kind) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let typed = !id.is_empty() && is_resource_type(kind) && !target.starts_with('#');
        let replaced = match kind {
            _ if !typed => uuid_urn(&key.reference_mac(source, patient, target)),
            "Patient" if id == patient => format!("Patient/{pseudonym}"),
            "Patient" => format!("Patient/{}", key.patient_pseudonym(id)),
            "Observation" => format!("Observation/{}", key.observation_id(source, patient, id)),
            _ => format!(
                "{kind}/{}",
                prefixed(
                    REFERENCE_PREFIX,
                    &key.reference_mac(source, patient, &format!("{kind}/{id}"))
                )
            ),
        };
        r.reference = Some(replaced);
    }
}

/// `Observation`, `Device`, `Patient` …: an upper-case ASCII letter, then letters or digits.
fn is_resource_type(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase()) && chars.all(|c| c.is_ascii_alphanumeric())
}

impl Transform for Profile {
    fn apply(&self, o: &mut Observation) -> bool {
        if self.config.is_identity() {
            return true;
        }
        self.drop_fields(o);
        let patient = o.patient_id.clone();
        let secrets = self.secrets(&patient, || patient.clone());
        if let Some(shift) = secrets.as_ref().map(|s| s.shift).filter(|s| *s != 0) {
            for t in o.date_times_mut() {
                *t = t.shift_days(shift);
            }
        }
        if let Some(precision) = self.truncate {
            for t in o.date_times_mut() {
                *t = t.truncate(precision);
            }
        }
        if self.config.drop_free_text {
            text::drop_free_text(o);
        }
        // Redacted before pseudonyms go in, so that a pseudonym in a warning stays whole.
        o.warnings.iter_mut().for_each(text::redact_warning);
        if let (Some(key), Some(pseudonym)) = (
            &self.key,
            secrets.as_ref().and_then(|s| s.pseudonym.as_ref()),
        ) {
            self.pseudonymize(key, o, pseudonym);
        }
        true
    }
}

/// Every configured profile by name.
#[derive(Debug, Default, Clone)]
pub struct Profiles {
    by_name: BTreeMap<String, Arc<Profile>>,
}

impl Profiles {
    /// Parses and validates `entries` (core's `[[profiles]]` tables) and loads each needed key
    /// from the environment through `env` (the process environment: `|v|
    /// std::env::var_os(v)`, see [`Profiles::from_process_env`]). Start-up, SIGHUP reloads and
    /// `medgate check` call this; a key that is missing or malformed is reported at
    /// `profiles[i] (name).pseudonym_key_env` by the variable's name, never its value.
    ///
    /// # Errors
    /// Every problem found.
    pub fn build(
        entries: &[toml::Table],
        env: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Profiles, ConfigIssues> {
        let (configs, mut issues) = parse_profiles(entries);
        if !issues.is_empty() {
            return Err(ConfigIssues(issues));
        }
        let mut by_name = BTreeMap::new();
        for (i, config) in configs.into_iter().enumerate() {
            let label = label(i, &entries[i]);
            let key = if config.needs_key() {
                match PseudonymKey::from_env(&config.pseudonym_key_env, &env) {
                    Ok(k) => Some(k),
                    Err(e) => {
                        issues.push(ConfigIssue::new(
                            format!("{label}.pseudonym_key_env"),
                            e.to_string(),
                        ));
                        continue;
                    }
                }
            } else {
                None
            };
            match Profile::new(config, key) {
                Ok(p) => {
                    by_name.insert(p.name().to_owned(), Arc::new(p));
                }
                Err(e) => issues.push(ConfigIssue::new(label, e.to_string())),
            }
        }
        if issues.is_empty() {
            Ok(Profiles { by_name })
        } else {
            Err(ConfigIssues(issues))
        }
    }

    /// [`Profiles::build`] with the process environment.
    ///
    /// # Errors
    /// As [`Profiles::build`].
    pub fn from_process_env(entries: &[toml::Table]) -> Result<Profiles, ConfigIssues> {
        Profiles::build(entries, |v| std::env::var_os(v))
    }

    /// The profile named `name`; as `Arc<dyn Transform>` it goes into
    /// `medgate_pipeline::Request::transforms`.
    pub fn get(&self, name: &str) -> Option<Arc<Profile>> {
        self.by_name.get(name).cloned()
    }

    /// Profile names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// No profile configured.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}
