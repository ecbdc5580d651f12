//! Why a flow-run message is dead-lettered, as a closed set: the `reason` label of
//! `ferry_dead_letters_total` and the `x-ferry-death-kind` header. The operator's sentence
//! (which file, which error) travels beside it in `x-ferry-death-reason`; a label built from
//! that free text would mint a series per failure and could carry a file name.

use std::fmt;

/// Why a message went to the dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeadLetterReason {
    /// The payload is not a flow-run message this worker can decode (not JSON, a schema
    /// version it does not know, a missing or invalid field).
    Malformed,
    /// The message names a flow that is not in the worker's configuration.
    UnknownFlow,
    /// The flow is configured but disabled.
    FlowDisabled,
    /// The run failed for reasons no retry can fix (authentication, a certificate, a
    /// configuration error, files refused permanently).
    PermanentFailure,
    /// The run kept failing transiently until the last attempt the broker allows.
    RetriesExhausted,
}

impl DeadLetterReason {
    /// Every reason (a worker starts each one's counter at zero, so that the first dead
    /// letter is an increase Prometheus sees, not the birth of a series).
    pub const ALL: [DeadLetterReason; 5] = [
        DeadLetterReason::Malformed,
        DeadLetterReason::UnknownFlow,
        DeadLetterReason::FlowDisabled,
        DeadLetterReason::PermanentFailure,
        DeadLetterReason::RetriesExhausted,
    ];

    /// The reason a stable word names (see [`DeadLetterReason::as_str`]).
    pub fn from_word(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.as_str() == word)
    }

    /// The stable word (label value and header value).
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::Malformed => "malformed",
            DeadLetterReason::UnknownFlow => "unknown_flow",
            DeadLetterReason::FlowDisabled => "flow_disabled",
            DeadLetterReason::PermanentFailure => "permanent_failure",
            DeadLetterReason::RetriesExhausted => "retries_exhausted",
        }
    }
}

impl fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// `ALL` (the counters a worker starts at zero) names every reason, each with its own
    /// word: a reason missing from it would be born with its first dead letter, unseen by
    /// `increase()`.
    #[test]
    fn all_names_every_reason_once_with_distinct_words() {
        let listed: HashSet<DeadLetterReason> = DeadLetterReason::ALL.into_iter().collect();
        for reason in DeadLetterReason::ALL {
            // Exhaustive: a new variant fails to compile here until it is listed.
            match reason {
                DeadLetterReason::Malformed
                | DeadLetterReason::UnknownFlow
                | DeadLetterReason::FlowDisabled
                | DeadLetterReason::PermanentFailure
                | DeadLetterReason::RetriesExhausted => {}
            }
        }
        assert_eq!(listed.len(), 5);
        let words: HashSet<&str> = DeadLetterReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(words.len(), DeadLetterReason::ALL.len());
    }
}
