//! The API's error: an HTTP status and the `{"error":{code,message,field}}` body.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use thiserror::Error;

use super::model::{ErrorBody, ErrorDetail};

#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
            field: None,
        }
    }

    pub fn with_field(mut self, field: &str) -> Self {
        self.field = Some(field.to_string());
        self
    }

    pub fn not_found(what: &str, id: &str) -> Self {
        ApiError::new(404, "not_found", format!("no {what} `{id}`"))
    }

    /// Well-formed input the daemon cannot accept (an unknown status, an
    /// unknown profile, a Teams user not in the directory).
    pub fn unprocessable(field: &str, code: &str, message: impl Into<String>) -> Self {
        ApiError::new(422, code, message).with_field(field)
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        ApiError::new(400, code, message)
    }

    /// The daemon cannot take the request now (stopping, store failing).
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(503, "unavailable", message)
    }
}

impl ApiError {
    /// The JSON body every error is sent with.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.clone(),
                message: self.message.clone(),
                field: self.field.clone(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // A status outside 100–999 can only come from a bug in the daemon;
        // the caller still gets the error shape.
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.body())).into_response()
    }
}
