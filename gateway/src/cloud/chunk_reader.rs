//! Reading chunks back: fetch, then verify and decode off the I/O threads.

use std::sync::Arc;

use bytes::Bytes;

use super::chunk::ChunkId;
use super::error::CloudError;
use super::keyring::Keyring;
use super::layout::Namespace;
use super::store::ObjectStore;

#[derive(Debug, Clone)]
pub struct ChunkReader {
    store: Arc<dyn ObjectStore>,
    keyring: Arc<Keyring>,
}

impl ChunkReader {
    pub fn new(store: Arc<dyn ObjectStore>, keyring: Arc<Keyring>) -> ChunkReader {
        ChunkReader { store, keyring }
    }

    /// The verified plaintext of chunk `id` of `namespace`. An archived
    /// chunk without a restored copy fails with `ErrorKind::NotRestored`.
    pub async fn read_chunk(
        &self,
        namespace: &Namespace,
        id: &ChunkId,
    ) -> Result<Bytes, CloudError> {
        let codec = self.keyring.codec_for_reading(namespace).await?;
        let object = self
            .store
            .get(&self.keyring.layout().chunk_key(namespace, id), None)
            .await?;
        let id = *id;
        let decoded = tokio::task::spawn_blocking(move || codec.decode(&id, object))
            .await
            .map_err(|e| CloudError::Worker(e.to_string()))?;
        Ok(decoded?)
    }
}
