//! The object store on any S3 API: AWS, MinIO, Ceph RGW, Garage, moto.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{self as s3types, GlacierJobParameters, MetadataDirective, Tier};
use aws_sdk_s3::Client;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use bytes::Bytes;

use super::{
    classify_s3_error, parse_restore_header, ByteRange, CompletedPart, ListPage, ObjectMeta,
    ObjectStore, ObjectSummary, RestoreStatus, RestoreTier, S3Config, StorageClass,
};
use crate::cloud::error::{ErrorKind, StoreError};

/// An S3 bucket reached through aws-sdk-s3.
///
/// The SDK's own retries are switched off: the gateway retries in one place
/// ([`crate::cloud::CloudStore`]) so that every retry is counted and paced
/// by the same policy whatever the backend.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    endpoint: String,
}

/// The HTTP client: direct, or through the proxy that HTTPS_PROXY,
/// HTTP_PROXY or ALL_PROXY name (NO_PROXY exempts hosts), which the
/// appliance's console sets for the service.
fn http_client(connect_timeout: Duration) -> aws_sdk_s3::config::SharedHttpClient {
    use aws_smithy_http_client::proxy::ProxyConfig;
    use aws_smithy_runtime_api::client::http::{http_client_fn, HttpConnectorSettings, SharedHttpConnector};
    let proxied = ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
        .iter()
        .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()));
    if !proxied {
        return aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https();
    }
    let settings = HttpConnectorSettings::builder().connect_timeout(connect_timeout).build();
    let connector = SharedHttpConnector::new(
        aws_smithy_http_client::Connector::builder()
            .connector_settings(settings)
            .proxy_config(ProxyConfig::from_env())
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build(),
    );
    // One connector (and its connection pool) for every request.
    http_client_fn(move |_, _| connector.clone())
}

impl S3Store {
    /// Builds a client from the configuration. Credentials come from the
    /// configuration when both parts are given, else from the standard
    /// chain (environment, profile, web identity, ECS, IMDS).
    pub async fn connect(config: &S3Config) -> S3Store {
        // rustls with ring: TLS for real endpoints without the long native
        // build of aws-lc; plain http keeps working for loopback servers.
        let connect_timeout = Duration::from_secs(config.connect_timeout_secs.max(1));
        let http_client = http_client(connect_timeout);
        let timeouts = TimeoutConfig::builder().connect_timeout(connect_timeout).build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http_client)
            .region(Region::new(config.region.clone()))
            .retry_config(RetryConfig::disabled())
            .timeout_config(timeouts);
        if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
            loader =
                loader.credentials_provider(Credentials::new(id, secret, None, None, "sgw-config"));
        }
        let shared = loader.load().await;
        let mut builder = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(config.path_style)
            // Chunks carry their own crc32c and GCM tag, checked end to end;
            // the SDK's extra checksums only break S3 look-alikes that do
            // not implement them.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        S3Store {
            client: Client::from_conf(builder.build()),
            bucket: config.bucket.clone(),
            endpoint: config
                .endpoint
                .clone()
                .unwrap_or_else(|| format!("aws:{}", config.region)),
        }
    }
}

impl S3Store {
    /// HEAD the bucket: does it exist, and may these credentials use it.
    pub async fn head_bucket(&self) -> Result<(), StoreError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| map_sdk_error("head bucket", &self.bucket, e))
    }
}

fn map_sdk_error<E>(op: &'static str, key: &str, err: SdkError<E>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let kind = match &err {
        SdkError::ServiceError(service) => {
            classify_s3_error(Some(service.raw().status().as_u16()), err.code())
        }
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => ErrorKind::Transient,
        SdkError::DispatchFailure(failure) if failure.is_user() => ErrorKind::Permanent,
        SdkError::DispatchFailure(_) => ErrorKind::Transient,
        _ => ErrorKind::Permanent,
    };
    let detail = DisplayErrorContext(&err).to_string();
    StoreError::new(kind, op, key, detail).with_source(err)
}

/// The body of a 200 response the SDK could not parse. Some S3 look-alikes
/// name the XML root of multipart responses differently from AWS (moto:
/// `CompleteMultipartUploadResponse`, rclone: `InitiateMultipartUpload`),
/// which the SDK rejects although the operation succeeded. A 200 body with
/// an `<Error>` element is a real failure (S3 reports some that way) and is
/// not treated as success.
fn lenient_success_body<E>(err: &SdkError<E>) -> Option<&str> {
    let SdkError::ServiceError(service) = err else {
        return None;
    };
    let raw = service.raw();
    if raw.status().as_u16() != 200 {
        return None;
    }
    let body = std::str::from_utf8(raw.body().bytes()?).ok()?;
    (!body.contains("<Error>")).then_some(body)
}

/// The text of the first `<name>…</name>` element.
fn xml_element(body: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{name}>"))?;
    Some(body[start..start + end].trim().to_owned())
}

fn s3_class(class: &StorageClass) -> s3types::StorageClass {
    s3types::StorageClass::from(class.as_s3_str())
}

fn size_of(op: &'static str, key: &str, length: Option<i64>) -> Result<u64, StoreError> {
    length.and_then(|l| u64::try_from(l).ok()).ok_or_else(|| {
        StoreError::new(
            ErrorKind::Permanent,
            op,
            key,
            "response without a valid length",
        )
    })
}

/// CopySource is `bucket/key`, URL-encoded except for the separators.
fn copy_source(bucket: &str, key: &str) -> String {
    let mut out = String::with_capacity(bucket.len() + key.len() + 1);
    out.push_str(bucket);
    out.push('/');
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'/' | b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[async_trait]
impl ObjectStore for S3Store {
    fn describe(&self) -> String {
        format!("s3://{} ({})", self.bucket, self.endpoint)
    }

    async fn put(&self, key: &str, body: Bytes, class: &StorageClass) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .storage_class(s3_class(class))
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| map_sdk_error("put", key, e))?;
        Ok(())
    }

    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<Bytes, StoreError> {
        let range_header = match range {
            Some(r) => match r.http_header() {
                Some(h) => Some(h),
                None => return Ok(Bytes::new()),
            },
            None => None,
        };
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_range(range_header)
            .send()
            .await
            .map_err(|e| map_sdk_error("get", key, e))?;
        let body = output.body.collect().await.map_err(|e| {
            // The body broke off mid-way: a dropped connection or a stall.
            StoreError::new(ErrorKind::Transient, "get", key, "response body failed").with_source(e)
        })?;
        Ok(body.into_bytes())
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        let output = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| map_sdk_error("head", key, e))?;
        let storage_class = output
            .storage_class()
            .map(|c| StorageClass::from_s3_str(c.as_str()))
            .unwrap_or_default();
        let restore = if storage_class.is_archive() {
            parse_restore_header(output.restore())
        } else {
            RestoreStatus::NotArchived
        };
        Ok(ObjectMeta {
            size: size_of("head", key, output.content_length())?,
            storage_class,
            etag: output.e_tag().map(str::to_owned),
            restore,
        })
    }

    async fn list_page(
        &self,
        prefix: &str,
        continuation: Option<String>,
    ) -> Result<ListPage, StoreError> {
        let output = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_continuation_token(continuation)
            .send()
            .await
            .map_err(|e| map_sdk_error("list", prefix, e))?;
        let mut objects = Vec::new();
        for object in output.contents() {
            let Some(key) = object.key() else { continue };
            objects.push(ObjectSummary {
                key: key.to_owned(),
                size: object
                    .size()
                    .and_then(|s| u64::try_from(s).ok())
                    .unwrap_or(0),
                storage_class: object
                    .storage_class()
                    .map(|c| StorageClass::from_s3_str(c.as_str()))
                    .unwrap_or_default(),
            });
        }
        let next = match output.is_truncated() {
            Some(true) => output.next_continuation_token().map(str::to_owned),
            _ => None,
        };
        Ok(ListPage { objects, next })
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| map_sdk_error("delete", key, e))?;
        Ok(())
    }

    async fn copy_to_storage_class(
        &self,
        key: &str,
        class: &StorageClass,
    ) -> Result<(), StoreError> {
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .key(key)
            .copy_source(copy_source(&self.bucket, key))
            .storage_class(s3_class(class))
            .metadata_directive(MetadataDirective::Copy)
            .send()
            .await
            .map_err(|e| map_sdk_error("copy", key, e))?;
        Ok(())
    }

    async fn restore(&self, key: &str, tier: RestoreTier, days: u32) -> Result<(), StoreError> {
        let job = GlacierJobParameters::builder()
            .tier(Tier::from(tier.as_s3_str()))
            .build()
            .map_err(|e| {
                StoreError::new(ErrorKind::Permanent, "restore", key, "bad request").with_source(e)
            })?;
        let request = s3types::RestoreRequest::builder()
            .days(i32::try_from(days).unwrap_or(i32::MAX))
            .glacier_job_parameters(job)
            .build();
        let result = self
            .client
            .restore_object()
            .bucket(&self.bucket)
            .key(key)
            .restore_request(request)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("RestoreAlreadyInProgress") => Ok(()),
            Err(e) => {
                let mapped = map_sdk_error("restore", key, e);
                // InvalidObjectState here means "this object is not archived",
                // which restoring will never fix.
                if mapped.kind() == ErrorKind::NotRestored {
                    return Err(StoreError::new(
                        ErrorKind::Permanent,
                        "restore",
                        key,
                        mapped.to_string(),
                    ));
                }
                Err(mapped)
            }
        }
    }

    async fn create_multipart(
        &self,
        key: &str,
        class: &StorageClass,
    ) -> Result<String, StoreError> {
        let result = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .storage_class(s3_class(class))
            .send()
            .await;
        let upload_id = match result {
            Ok(output) => output.upload_id().map(str::to_owned),
            Err(e) => match lenient_success_body(&e) {
                Some(body) => xml_element(body, "UploadId"),
                None => return Err(map_sdk_error("create_multipart", key, e)),
            },
        };
        upload_id.ok_or_else(|| {
            StoreError::new(
                ErrorKind::Permanent,
                "create_multipart",
                key,
                "no upload id returned",
            )
        })
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Bytes,
    ) -> Result<CompletedPart, StoreError> {
        let number = i32::try_from(part_number).map_err(|_| {
            StoreError::new(
                ErrorKind::Permanent,
                "upload_part",
                key,
                "part number out of range",
            )
        })?;
        let output = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| map_sdk_error("upload_part", key, e))?;
        let etag = output.e_tag().ok_or_else(|| {
            StoreError::new(ErrorKind::Permanent, "upload_part", key, "no ETag returned")
        })?;
        Ok(CompletedPart {
            part_number,
            etag: etag.to_owned(),
        })
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<(), StoreError> {
        let parts = parts
            .into_iter()
            .map(|p| {
                s3types::CompletedPart::builder()
                    .part_number(i32::try_from(p.part_number).unwrap_or(i32::MAX))
                    .e_tag(p.etag)
                    .build()
            })
            .collect();
        let result = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                s3types::CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if lenient_success_body(&e).is_some() => Ok(()),
            Err(e) => Err(map_sdk_error("complete_multipart", key, e)),
        }
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| map_sdk_error("abort_multipart", key, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{copy_source, xml_element};

    #[test]
    fn upload_id_from_any_root() {
        let rclone = "<?xml version=\"1.0\"?>\n<InitiateMultipartUpload>\n  <Bucket>b</Bucket>\n  <UploadId>39f4-c57c</UploadId>\n</InitiateMultipartUpload>";
        assert_eq!(
            xml_element(rclone, "UploadId").as_deref(),
            Some("39f4-c57c")
        );
        assert_eq!(xml_element("<A><B>x</B></A>", "UploadId"), None);
    }

    #[test]
    fn copy_source_encodes_all_but_separators() {
        assert_eq!(copy_source("b", "p/ns/a-b_c.d"), "b/p/ns/a-b_c.d");
        assert_eq!(copy_source("b", "a b+c"), "b/a%20b%2Bc");
    }
}
