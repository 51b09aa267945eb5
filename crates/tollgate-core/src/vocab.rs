//! Controlled vocabularies: environment, operation, status, attribution and pricing status.
//!
//! Each value has one canonical lowercase spelling, used in the ledger, JSON and CSV alike.

use std::fmt;
use std::str::FromStr;

use crate::error::CoreError;

macro_rules! vocabulary {
    ($(#[$doc:meta])* $name:ident, $field:literal { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = CoreError;
            fn from_str(s: &str) -> Result<Self, CoreError> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(CoreError::InvalidValue {
                        field: $field.into(),
                        value: s.into(),
                        expected: concat!("one of: ", $($text, " "),+).trim_end().into(),
                    }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

vocabulary!(
    /// Where the call ran.
    Environment, "environment" {
        Prod => "prod",
        Staging => "staging",
        Dev => "dev",
        Test => "test",
    }
);

vocabulary!(
    /// What kind of call it was.
    Operation, "operation" {
        Chat => "chat",
        Responses => "responses",
        TextCompletion => "text_completion",
        Embeddings => "embeddings",
        Rerank => "rerank",
        Image => "image",
        Audio => "audio",
        Batch => "batch",
    }
);

vocabulary!(
    /// How the call ended.
    Status, "status" {
        Ok => "ok",
        ClientError => "client_error",
        UpstreamError => "upstream_error",
        Cancelled => "cancelled",
    }
);

vocabulary!(
    /// Whether the event can be charged back as it stands (set by Tollgate).
    AttributionStatus, "attribution_status" {
        Ok => "ok",
        Flagged => "flagged",
        Quarantined => "quarantined",
        Overridden => "overridden",
    }
);

vocabulary!(
    /// Whether the event has an exact cost.
    PricingStatus, "pricing_status" {
        Priced => "priced",
        Unpriced => "unpriced",
        Estimated => "estimated",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_canonical_spellings_only() {
        assert_eq!("prod".parse::<Environment>().unwrap(), Environment::Prod);
        let err = "production".parse::<Environment>().unwrap_err().to_string();
        assert!(
            err.contains("production") && err.contains("prod staging dev test"),
            "{err}"
        );
        assert_eq!(
            "text_completion".parse::<Operation>().unwrap(),
            Operation::TextCompletion
        );
        assert!("OK".parse::<Status>().is_err());
        for s in PricingStatus::ALL {
            assert_eq!(s.as_str().parse::<PricingStatus>().unwrap(), *s);
        }
    }
}
