//! The AWS Secrets Manager back end: `GetSecretValue` through the AWS SDK.
//!
//! The SDK client is built once, lazily (the first `aws-sm:` resolution), from the
//! configured region and endpoint, else from the SDK's own defaults (`AWS_REGION`,
//! `AWS_ENDPOINT_URL`, the default credential chain: environment, profile, web identity,
//! container and instance roles). The SDK signs every request and retries throttling and
//! network errors itself. Its errors are classified here into [`Fault`]s; the raw HTTP
//! response is never kept, since a successful response holds the secret.

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::{BehaviorVersion, Region};
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use tokio::sync::OnceCell;
use tracing::{debug, instrument};

use super::Secret;
use super::error::{Fault, chain};
use super::settings::AwsSettings;

/// The Secrets Manager client of a resolver, built on first use.
pub(crate) struct AwsBackend {
    settings: AwsSettings,
    client: OnceCell<Client>,
}

impl AwsBackend {
    /// A back end for these settings; the SDK is not configured before the first read.
    pub(crate) fn new(settings: AwsSettings) -> Self {
        AwsBackend {
            settings,
            client: OnceCell::new(),
        }
    }

    /// The secret string of `secret_id` (a name or an ARN).
    #[instrument(name = "aws_sm.get_secret_value", skip(self))]
    pub(crate) async fn read(&self, secret_id: &str) -> Result<Secret, Fault> {
        let output = self
            .client()
            .await
            .get_secret_value()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| fault(&e))?;
        debug!(version = output.version_id().unwrap_or("?"), "secret read");
        output.secret_string.map(Secret::new).ok_or(Fault::NotText)
    }

    async fn client(&self) -> &Client {
        self.client
            .get_or_init(|| async {
                let mut loader = aws_config::defaults(BehaviorVersion::latest());
                if let Some(region) = &self.settings.region {
                    loader = loader.region(Region::new(region.clone()));
                }
                if let Some(endpoint) = &self.settings.endpoint_url {
                    loader = loader.endpoint_url(endpoint);
                }
                let config = loader.load().await;
                debug!(
                    region = config.region().map(|r| r.as_ref()).unwrap_or("none"),
                    "AWS Secrets Manager client configured"
                );
                Client::new(&config)
            })
            .await
    }
}

/// Sorts the SDK's error into what a caller can act on.
fn fault<R: std::fmt::Debug + 'static>(error: &SdkError<GetSecretValueError, R>) -> Fault {
    match error {
        SdkError::ServiceError(service) => {
            let err = service.err();
            let words = format!(
                "{}: {}",
                err.code().unwrap_or("error"),
                err.message().unwrap_or("no message")
            );
            match err {
                GetSecretValueError::ResourceNotFoundException(_) => Fault::NotFound,
                GetSecretValueError::InternalServiceError(_) => Fault::Unavailable(words),
                GetSecretValueError::DecryptionFailure(_) => Fault::PermissionDenied(words),
                _ => match err.code() {
                    Some("AccessDeniedException") => Fault::PermissionDenied(words),
                    Some(
                        "UnrecognizedClientException"
                        | "InvalidSignatureException"
                        | "ExpiredTokenException"
                        | "InvalidClientTokenId"
                        | "IncompleteSignature",
                    ) => Fault::LoginFailed {
                        method: "credentials",
                        reason: words,
                    },
                    Some("ThrottlingException" | "ServiceUnavailable" | "RequestTimeout") => {
                        Fault::Unavailable(words)
                    }
                    _ => Fault::Unexpected(words),
                },
            }
        }
        SdkError::DispatchFailure(dispatch) if dispatch.is_io() || dispatch.is_timeout() => {
            Fault::Unavailable(chain(error))
        }
        SdkError::TimeoutError(_) => Fault::Unavailable(chain(error)),
        // The raw response may hold the secret: say only that it could not be read.
        SdkError::ResponseError(_) => {
            Fault::Unexpected("the response could not be read".to_string())
        }
        // No region, no credentials, a malformed endpoint...: nothing was sent.
        _ => Fault::InvalidSettings(chain(error)),
    }
}
