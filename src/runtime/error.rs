//! What can go wrong with a request, independent of the transport: the HTTP layer maps each kind
//! to a status code (`api::errors`), `api::grpc` derives a gRPC code from that status.

/// A request's failure, as its client should see it.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RuntimeError {
    /// Malformed or invalid request (empty input, bad parameter value).
    #[error("{0}")]
    BadRequest(String),
    #[error("model `{0}` is not served")]
    UnknownModel(String),
    #[error("model `{model}` has no variant `{variant}`")]
    UnknownVariant { model: String, variant: String },
    /// Too many inputs, or an input with too many characters.
    #[error("{0}")]
    TooLarge(String),
    /// More tokens than the model accepts, and truncation was not asked for.
    #[error("{0}")]
    InputTooLong(String),
    /// A language pair, format or option the server does not offer.
    #[error("{0}")]
    Unsupported(String),
    #[error("the queue of {0} is full; retry later")]
    QueueFull(String),
    /// The model is still loading.
    #[error("{0}")]
    NotReady(String),
    /// The named variant failed to load: permanent until it is loaded again.
    #[error("{0}")]
    VariantFailed(String),
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("the request's deadline passed before its results were ready")]
    DeadlineExceeded,
    #[error("internal error: {0}")]
    Internal(String),
    /// No such thing (an unknown request id for feedback).
    #[error("{0}")]
    NotFound(String),
    /// The request contradicts the current state (unload a variant that has traffic, ...).
    #[error("{0}")]
    Conflict(String),
    /// Not allowed by configuration (choosing a variant when overrides are off).
    #[error("{0}")]
    Forbidden(String),
    /// A variant could not be loaded (missing folder, unknown scheme, bad file).
    #[error("{0}")]
    LoadFailed(String),
    /// A variant loaded but agrees too little with its reference to be activated.
    #[error(
        "the self-check refused the variant: agreement {:.3} ({}) with {} on {} texts is below {:.3}",
        .0.agreement, .0.measure, .0.reference, .0.samples, .0.min_agreement
    )]
    SelfCheckFailed(super::selfcheck::SelfCheck),
}

impl From<crate::models::ModelError> for RuntimeError {
    /// The one place a model's failure becomes a request's: too long and invalid inputs are the
    /// client's, anything else the server's.
    fn from(e: crate::models::ModelError) -> Self {
        use crate::models::ModelError;
        match e {
            ModelError::InputTooLong(e) => Self::InputTooLong(e.to_string()),
            ModelError::InvalidInput(e) => Self::BadRequest(format!("{e:#}")),
            ModelError::Failed(e) => Self::Internal(format!("{e:#}")),
        }
    }
}
