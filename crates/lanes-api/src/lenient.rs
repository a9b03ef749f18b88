//! [`Lenient`]: a value this lanes knows, or one a newer forge sent that it does not.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value read leniently: [`Lenient::Known`] when this lanes knows it, [`Lenient::Unknown`]
/// with the JSON as it came when a newer forge sent a status or a reason kind this lanes
/// predates. Written (and described in the OpenAPI document) as the known type alone: the
/// server only ever sends what it knows.
#[derive(Clone, Debug, PartialEq)]
pub enum Lenient<T> {
    /// A value of the known type.
    Known(T),
    /// A value this lanes does not know, as it came.
    Unknown(serde_json::Value),
}

impl<T> Lenient<T> {
    /// The known value.
    pub fn known(&self) -> Option<&T> {
        match self {
            Lenient::Known(t) => Some(t),
            Lenient::Unknown(_) => None,
        }
    }

    /// The name this value goes by: its string form, or the `kind` of an object (a reason).
    pub fn name(&self) -> String
    where
        T: Serialize,
    {
        let value = match self {
            Lenient::Known(t) => serde_json::to_value(t).unwrap_or(serde_json::Value::Null),
            Lenient::Unknown(v) => v.clone(),
        };
        match &value {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Object(o) => match o.get("kind") {
                Some(serde_json::Value::String(kind)) => kind.clone(),
                _ => value.to_string(),
            },
            other => other.to_string(),
        }
    }
}

/// The value's [`Lenient::name`], padded as the formatter asks.
impl<T: Serialize> std::fmt::Display for Lenient<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&self.name())
    }
}

impl<T> From<T> for Lenient<T> {
    fn from(t: T) -> Lenient<T> {
        Lenient::Known(t)
    }
}

impl<T: PartialEq> PartialEq<T> for Lenient<T> {
    fn eq(&self, other: &T) -> bool {
        self.known() == Some(other)
    }
}

impl<T: Serialize> Serialize for Lenient<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Lenient::Known(t) => t.serialize(serializer),
            Lenient::Unknown(v) => v.serialize(serializer),
        }
    }
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        Ok(match T::deserialize(&value) {
            Ok(t) => Lenient::Known(t),
            Err(_) => Lenient::Unknown(value),
        })
    }
}

#[cfg(feature = "schema")]
impl<T: schemars::JsonSchema> schemars::JsonSchema for Lenient<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }

    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }

    fn inline_schema() -> bool {
        T::inline_schema()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lanes_core::job::{JobReason, JobState};

    #[test]
    fn a_known_value_reads_as_known_and_writes_unchanged() {
        let state: Lenient<JobState> = serde_json::from_str("\"timed-out\"").expect("reads");
        assert_eq!(state, JobState::TimedOut);
        assert_eq!(
            serde_json::to_string(&state).ok().as_deref(),
            Some("\"timed-out\"")
        );
    }

    #[test]
    fn a_value_from_a_newer_forge_is_kept_by_name() {
        let state: Lenient<JobState> = serde_json::from_str("\"paused\"").expect("reads");
        assert_eq!(state.known(), None);
        assert_eq!(state.name(), "paused");
        let reason: Lenient<JobReason> =
            serde_json::from_str(r#"{"kind": "waiting-for-moon", "phase": 3}"#).expect("reads");
        assert_eq!(reason.name(), "waiting-for-moon");
        assert_eq!(
            serde_json::to_value(&reason).ok(),
            Some(serde_json::json!({"kind": "waiting-for-moon", "phase": 3}))
        );
    }
}
