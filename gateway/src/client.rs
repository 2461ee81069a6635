//! The CLI's client of the admin API.

use serde::de::DeserializeOwned;

use crate::api::{CreateSnapshot, CreateVolume, ErrorBody, RecoveryPointCreated, Recovered};
use crate::cached::SnapshotRecord;
use crate::tapes::{CreateTapes, LibraryInfo, TapeInfo};
use crate::volumes::VolumeInfo;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Api(String),
    #[error("cannot reach the gateway at {url}: {msg}")]
    Unreachable { url: String, msg: String },
    #[error("unexpected response: {0}")]
    Decode(String),
}

pub struct Client {
    base: String,
}

fn api_error(e: ureq::Error, url: &str) -> ClientError {
    match e {
        ureq::Error::Status(code, resp) => {
            let msg = resp
                .into_json::<ErrorBody>()
                .map(|b| b.error)
                .unwrap_or_else(|_| format!("HTTP {code}"));
            ClientError::Api(msg)
        }
        ureq::Error::Transport(t) => ClientError::Unreachable { url: url.to_string(), msg: t.to_string() },
    }
}

impl Client {
    pub fn new(base: &str) -> Client {
        Client { base: base.trim_end_matches('/').to_string() }
    }

    fn json<T: DeserializeOwned>(r: ureq::Response) -> Result<T, ClientError> {
        r.into_json().map_err(|e| ClientError::Decode(e.to_string()))
    }

    pub fn create_volume(&self, req: &CreateVolume) -> Result<VolumeInfo, ClientError> {
        let url = format!("{}/api/v1/volumes", self.base);
        let r = ureq::post(&url).send_json(req).map_err(|e| api_error(e, &url))?;
        Self::json(r)
    }

    pub fn list_volumes(&self) -> Result<Vec<VolumeInfo>, ClientError> {
        let url = format!("{}/api/v1/volumes", self.base);
        let r = ureq::get(&url).call().map_err(|e| api_error(e, &url))?;
        Self::json(r)
    }

    pub fn delete_volume(&self, name: &str) -> Result<(), ClientError> {
        let url = format!("{}/api/v1/volumes/{}", self.base, name);
        ureq::delete(&url).call().map_err(|e| api_error(e, &url))?;
        Ok(())
    }

    pub fn create_recovery_point(&self, volume: &str) -> Result<RecoveryPointCreated, ClientError> {
        let url = format!("{}/api/v1/volumes/{}/recovery-points", self.base, volume);
        let r = ureq::post(&url).call().map_err(|e| api_error(e, &url))?;
        Self::json(r)
    }

    pub fn create_snapshot(&self, volume: &str) -> Result<SnapshotRecord, ClientError> {
        let url = format!("{}/api/v1/snapshots", self.base);
        let r = ureq::post(&url).send_json(CreateSnapshot { volume: volume.to_owned() }).map_err(|e| api_error(e, &url))?;
        Self::json(r)
    }

    pub fn list_snapshots(&self) -> Result<Vec<SnapshotRecord>, ClientError> {
        let url = format!("{}/api/v1/snapshots", self.base);
        let r = ureq::get(&url).call().map_err(|e| api_error(e, &url))?;
        Self::json(r)
    }

    pub fn delete_snapshot(&self, id: &str) -> Result<(), ClientError> {
        let url = format!("{}/api/v1/snapshots/{}", self.base, id);
        ureq::delete(&url).call().map_err(|e| api_error(e, &url))?;
        Ok(())
    }

    pub fn recover(&self) -> Result<Recovered, ClientError> {
        let url = format!("{}/api/v1/recover", self.base);
        let r = ureq::post(&url).call().map_err(|e| api_error(e, &url))?;
        Self::json(r)
    }

    pub fn create_tapes(&self, req: &CreateTapes) -> Result<Vec<TapeInfo>, ClientError> {
        let url = format!("{}/api/v1/tapes", self.base);
        let r = ureq::post(&url).send_json(req).map_err(|e| api_error(e, &url))?;
        Self::json(r)
    }

    pub fn list_tapes(&self) -> Result<Vec<TapeInfo>, ClientError> {
        let url = format!("{}/api/v1/tapes", self.base);
        let r = ureq::get(&url).call().map_err(|e| api_error(e, &url))?;
        Self::json(r)
    }

    pub fn retrieve_tape(&self, barcode: &str) -> Result<TapeInfo, ClientError> {
        let url = format!("{}/api/v1/tapes/{}/retrieve", self.base, barcode);
        let r = ureq::post(&url).call().map_err(|e| api_error(e, &url))?;
        Self::json(r)
    }

    pub fn delete_tape(&self, barcode: &str) -> Result<(), ClientError> {
        let url = format!("{}/api/v1/tapes/{}", self.base, barcode);
        ureq::delete(&url).call().map_err(|e| api_error(e, &url))?;
        Ok(())
    }

    pub fn library(&self) -> Result<LibraryInfo, ClientError> {
        let url = format!("{}/api/v1/library", self.base);
        let r = ureq::get(&url).call().map_err(|e| api_error(e, &url))?;
        Self::json(r)
    }
}
