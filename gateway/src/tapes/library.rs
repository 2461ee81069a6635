//! The tape library service: one media changer and ten LTO-5 drives, each
//! its own iSCSI target at LUN 0, over the [`TapeStore`]; and what the
//! admin asks of it (create, list, retrieve, delete).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use iscsi_target::scsi::LogicalUnit;
use iscsi_target::target::{Target, TargetCatalog};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use vtl::layout::{ElementCounts, ElementType, Layout};
use vtl::library::ElementMap;
use vtl::media::{DataTransferElement, MediaLibrary};
use vtl::personality::Personality;
use vtl::smc::{LibraryError, MediaChanger};
use vtl::ssc::{lto5_identity, DriveConfig, TapeDrive};

use super::devices::{
    changer_iqn, drive_iqn, drive_name, load_or_create_gateway_id, single_lun_target, DeviceIds, LibraryAccess,
    MeteredDrive, TapeMetrics, DRIVE_COUNT,
};
use super::records::{check_size, Pool, TapeError, TapeRecord, TapeState, MIN_TAPE_SIZE};
use super::store::TapeStore;
use crate::access::{validate_initiators, AccessChange};
use crate::cached::Engine;

/// Which library the changer presents itself as (`library_personality`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LibraryPersonality {
    /// AWS-Gateway-VTL.
    #[default]
    Aws,
    /// StorageTek L700.
    Stk,
}

impl LibraryPersonality {
    fn vtl(self) -> Personality {
        match self {
            LibraryPersonality::Aws => Personality::AwsGatewayVtl,
            LibraryPersonality::Stk => Personality::StkL700,
        }
    }
}

/// The library's configuration.
#[derive(Debug, Clone, Copy)]
pub struct TapeConfig {
    pub personality: LibraryPersonality,
    /// Smallest tape accepted: 100 GiB, lowered only by the test-only
    /// `tape_min_size_bytes` key.
    pub min_size_bytes: u64,
}

impl Default for TapeConfig {
    fn default() -> Self {
        TapeConfig { personality: LibraryPersonality::Aws, min_size_bytes: MIN_TAPE_SIZE }
    }
}

/// `POST /api/v1/tapes`: one barcode, or a prefix and a count.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTapes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub barcode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    pub size_bytes: u64,
    #[serde(default)]
    pub pool: Pool,
    #[serde(default)]
    pub worm: bool,
}

/// Where a tape is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LocationKind {
    Storage,
    ImportExport,
    Drive,
    /// Out of the library: on the archive shelf.
    Archive,
    /// Between places (being created or archived).
    None,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TapeLocation {
    pub kind: LocationKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub element: Option<u16>,
    /// The drive's target IQN when the tape is in a drive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drive_iqn: Option<String>,
}

/// A tape as the API reports it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TapeInfo {
    pub barcode: String,
    pub size_bytes: u64,
    pub used_bytes: u64,
    pub state: TapeState,
    pub pool: Pool,
    pub worm: bool,
    pub created_unix: u64,
    pub location: TapeLocation,
    /// When the tape entered its state (e.g. since when it is RETRIEVING);
    /// absent for tapes recorded before this was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_since_unix: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChangerInfo {
    pub iqn: String,
    pub lun: u64,
    pub personality: LibraryPersonality,
    pub vendor: String,
    pub product: String,
    pub serial: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DriveInfo {
    pub iqn: String,
    pub lun: u64,
    pub serial: String,
    pub element: u16,
    #[serde(default)]
    pub barcode: Option<String>,
}

/// `GET /api/v1/library`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LibraryInfo {
    pub changer: ChangerInfo,
    pub drives: Vec<DriveInfo>,
    /// CHAP of the changer and every drive.
    #[serde(default)]
    pub chap_enabled: bool,
    #[serde(default)]
    pub mutual_chap_enabled: bool,
    /// The initiators allowed to log in to the changer and drives; empty:
    /// no list (the gateway's `iscsi_access` decides).
    #[serde(default)]
    pub initiators: Vec<String>,
}

pub struct TapeLibrary {
    pub(crate) store: Arc<TapeStore>,
    pub(crate) changer: Arc<MediaChanger>,
    drives: Vec<Arc<TapeDrive>>,
    /// The changer's and drives' targets, rebuilt when the access changes
    /// (sessions logged in keep the targets they logged in to).
    targets: RwLock<Vec<Arc<Target>>>,
    access: Mutex<LibraryAccess>,
    data_dir: PathBuf,
    config: TapeConfig,
    ids: DeviceIds,
    metrics: TapeMetrics,
    /// Creations, deletions and retrievals, one at a time.
    changes: tokio::sync::Mutex<()>,
    /// Barcodes with a background flow running.
    pub(crate) flows: Mutex<HashSet<String>>,
    pub(crate) shutdown: CancellationToken,
}

fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn library_error(e: LibraryError) -> TapeError {
    TapeError::Library(e.to_string())
}

impl TapeLibrary {
    /// Opens the tapes, builds the changer and drives (tapes the saved
    /// element map puts in drives are loaded again), and resumes the
    /// archive, retrieve and import flows a previous run left unfinished.
    pub async fn start(
        data_dir: &Path,
        engine: Arc<Engine>,
        config: TapeConfig,
        registry: &prometheus::Registry,
        shutdown: CancellationToken,
    ) -> Result<Arc<TapeLibrary>, TapeError> {
        let metrics = TapeMetrics::register(registry).map_err(|e| TapeError::Library(e.to_string()))?;
        let (store, exports) = TapeStore::open(data_dir, engine).await?;
        let ids = DeviceIds::new(load_or_create_gateway_id(data_dir)?);
        let drives: Vec<Arc<TapeDrive>> = (1..=DRIVE_COUNT)
            .map(|n| TapeDrive::new(lto5_identity(ids.serial(n), ids.naa_id(n)), DriveConfig::default()))
            .collect();
        let personality = config.personality.vtl();
        let counts = ElementCounts { drives: DRIVE_COUNT as u16, ..personality.default_counts() };
        let layout = Layout::new(personality, counts).map_err(|e| TapeError::Library(e.to_string()))?;
        let elements = store.load_elements()?;
        let changer = MediaChanger::new(
            personality.identity(ids.serial(0), ids.naa_id(0), "0100".into()),
            layout,
            drives.iter().map(|d| d.clone() as Arc<dyn DataTransferElement>).collect(),
            store.clone() as Arc<dyn MediaLibrary>,
            elements,
        )
        .await
        .map_err(library_error)?;
        let changer = Arc::new(changer);
        let access = LibraryAccess::load(data_dir)?;
        let mut targets = vec![single_lun_target(changer_iqn(), "tape changer".into(), changer.clone(), &access)];
        for (i, d) in drives.iter().enumerate() {
            let n = i + 1;
            let lu: Arc<dyn LogicalUnit> = Arc::new(MeteredDrive::new(d.clone(), &drive_name(n), &metrics));
            targets.push(single_lun_target(drive_iqn(n), drive_name(n), lu, &access));
        }
        let library = Arc::new(TapeLibrary {
            store,
            changer,
            drives,
            targets: RwLock::new(targets),
            access: Mutex::new(access),
            data_dir: data_dir.to_path_buf(),
            config,
            ids,
            metrics,
            changes: tokio::sync::Mutex::new(()),
            flows: Mutex::new(HashSet::new()),
            shutdown,
        });
        library.resume_flows().await;
        tokio::spawn(library.clone().run_exports(exports));
        Ok(library)
    }

    /// Commits what the drives hold (shutdown: before the cache flush).
    pub async fn flush(&self) {
        for (i, d) in self.drives.iter().enumerate() {
            if let Err(e) = d.flush().await {
                tracing::error!(drive = %drive_name(i + 1), error = %e, "flushing a tape drive failed");
            }
        }
    }

    /// Publishes the tapes-per-state gauge.
    pub fn publish_gauges(&self) {
        let records = self.store.records();
        for s in TapeState::ALL {
            let n = records.iter().filter(|r| r.state == s).count();
            self.metrics.tapes.with_label_values(&[s.name()]).set(n as i64);
        }
    }

    fn location(&self, r: &TapeRecord, elements: &ElementMap) -> TapeLocation {
        let none = |kind| TapeLocation { kind, element: None, drive_iqn: None };
        if matches!(r.state, TapeState::Archived | TapeState::Retrieving) {
            return none(LocationKind::Archive);
        }
        let Some(address) = elements.locate(&r.barcode) else { return none(LocationKind::None) };
        let layout = self.changer.layout();
        let kind = match layout.element_type(address) {
            Some(ElementType::Storage) => LocationKind::Storage,
            Some(ElementType::ImportExport) => LocationKind::ImportExport,
            Some(ElementType::DataTransfer) => LocationKind::Drive,
            _ => LocationKind::None,
        };
        let drive_iqn = layout.drive_index(address).map(|i| drive_iqn(i + 1));
        TapeLocation { kind, element: Some(address), drive_iqn }
    }

    fn info(&self, r: &TapeRecord, elements: &ElementMap) -> TapeInfo {
        let used_bytes = self.store.tape(&r.barcode).map_or(r.used_bytes, |t| t.used_bytes());
        TapeInfo {
            barcode: r.barcode.clone(),
            size_bytes: r.size_bytes,
            used_bytes,
            state: r.state,
            pool: r.pool,
            worm: r.worm,
            created_unix: r.created_unix,
            location: self.location(r, elements),
            state_since_unix: (r.state_since_unix > 0).then_some(r.state_since_unix),
        }
    }

    pub async fn list(&self) -> Vec<TapeInfo> {
        let elements = self.changer.elements().await;
        self.store.records().iter().map(|r| self.info(r, &elements)).collect()
    }

    pub async fn get(&self, barcode: &str) -> Result<TapeInfo, TapeError> {
        let r = self.store.record(barcode).ok_or_else(|| TapeError::NotFound(barcode.to_owned()))?;
        Ok(self.info(&r, &self.changer.elements().await))
    }

    pub async fn library_info(&self) -> LibraryInfo {
        let access = self.access.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let identity = self.changer.identity();
        let layout = self.changer.layout();
        let drives = layout
            .range(ElementType::DataTransfer)
            .addresses()
            .zip(&self.drives)
            .enumerate()
            .map(|(i, (element, d))| DriveInfo {
                iqn: drive_iqn(i + 1),
                lun: 0,
                serial: self.ids.serial(i + 1),
                element,
                barcode: d.loaded(),
            })
            .collect();
        LibraryInfo {
            changer: ChangerInfo {
                iqn: changer_iqn(),
                lun: 0,
                personality: self.config.personality,
                vendor: identity.vendor.clone(),
                product: identity.product.clone(),
                serial: identity.serial.clone(),
            },
            drives,
            chap_enabled: access.chap.is_some(),
            mutual_chap_enabled: access.chap.as_ref().is_some_and(|c| c.mutual_user.is_some()),
            initiators: access.initiators,
        }
    }

    /// Changes who may log in to the changer and drives; kept in
    /// `library-access.json`. The next login sees it.
    pub fn set_access(&self, change: AccessChange) -> Result<(), TapeError> {
        if let Some(Some(c)) = &change.chap {
            crate::volumes::validate_chap(c).map_err(|e| TapeError::InvalidRequest(e.to_string()))?;
        }
        let initiators =
            change.initiators.as_deref().map(validate_initiators).transpose().map_err(TapeError::InvalidRequest)?;
        let mut access = self.access.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = access.clone();
        if let Some(chap) = change.chap {
            next.chap = chap;
        }
        if let Some(initiators) = initiators {
            next.initiators = initiators;
        }
        next.save(&self.data_dir)?;
        let mut targets = self.targets.write().unwrap_or_else(|e| e.into_inner());
        *targets = targets
            .iter()
            .map(|t| {
                Arc::new(Target {
                    name: t.name.clone(),
                    alias: t.alias.clone(),
                    chap: crate::volumes::chap_config(next.chap.as_ref()),
                    initiators: next.initiators.clone(),
                    luns: t.luns.clone(),
                })
            })
            .collect();
        *access = next;
        Ok(())
    }

    /// Creates tapes; they appear in free import/export slots (or, while
    /// the application keeps the slots locked, once it unlocks them).
    pub async fn create(self: &Arc<Self>, req: CreateTapes) -> Result<Vec<TapeInfo>, TapeError> {
        check_size(req.size_bytes, self.config.min_size_bytes)?;
        let _changes = self.changes.lock().await;
        let barcodes = match (&req.barcode, &req.prefix, req.count) {
            (Some(b), None, None) => {
                self.store.with_book(|book| book.check_new(b))?;
                vec![b.clone()]
            }
            (None, Some(prefix), Some(count)) => self.store.with_book(|book| book.generate(prefix, count))?,
            _ => return Err(TapeError::InvalidRequest("give a barcode, or a prefix and a count".into())),
        };
        let layout = self.changer.layout();
        let free_slots = layout.range(ElementType::ImportExport).count as usize
            - self.changer.elements().await.iter().filter(|(a, _)| layout.element_type(*a) == Some(ElementType::ImportExport)).count();
        if barcodes.len() > free_slots {
            return Err(TapeError::InvalidRequest(format!(
                "{} import/export slots are free; move tapes into the library first",
                free_slots
            )));
        }
        let records: Vec<TapeRecord> = barcodes
            .iter()
            .map(|b| TapeRecord {
                barcode: b.clone(),
                id: rand::random::<u64>() >> 4,
                size_bytes: req.size_bytes,
                pool: req.pool,
                worm: req.worm,
                state: TapeState::Creating,
                created_unix: now_unix(),
                used_bytes: 0,
                state_since_unix: now_unix(),
            })
            .collect();
        self.store.add(&records)?;
        for r in &records {
            self.store.open_tape(r).await?;
            tracing::info!(barcode = %r.barcode, size = r.size_bytes, pool = ?r.pool, worm = r.worm, "tape created");
            // In barcode order into the slots; while the application keeps
            // them locked, the tape stays CREATING and goes in later.
            match self.changer.import_tape(&r.barcode).await {
                Ok(_) => {
                    self.store.set_state(&r.barcode, TapeState::Available)?;
                }
                Err(e) => {
                    tracing::info!(barcode = %r.barcode, error = %e, "tape waits for an import/export slot");
                    self.spawn_import(&r.barcode);
                }
            }
        }
        let elements = self.changer.elements().await;
        Ok(records.iter().filter_map(|r| self.store.record(&r.barcode)).map(|r| self.info(&r, &elements)).collect())
    }

    /// Starts restoring an archived tape; it comes back read-only.
    pub async fn retrieve(self: &Arc<Self>, barcode: &str) -> Result<TapeInfo, TapeError> {
        let _changes = self.changes.lock().await;
        let r = self.store.record(barcode).ok_or_else(|| TapeError::NotFound(barcode.to_owned()))?;
        if r.state != TapeState::Archived {
            return Err(TapeError::WrongState {
                barcode: barcode.to_owned(),
                state: r.state.name(),
                why: "only ARCHIVED tapes can be retrieved",
            });
        }
        let r = self.store.set_state(barcode, TapeState::Retrieving)?;
        self.spawn_retrieve(barcode);
        Ok(self.info(&r, &self.changer.elements().await))
    }

    /// Deletes a tape: an archived one, or one in an import/export slot.
    /// Its cloud data, key record and cache data go; its barcode stays used.
    pub async fn delete(&self, barcode: &str) -> Result<(), TapeError> {
        let _changes = self.changes.lock().await;
        let r = self.store.record(barcode).ok_or_else(|| TapeError::NotFound(barcode.to_owned()))?;
        let wrong = |why| TapeError::WrongState { barcode: barcode.to_owned(), state: r.state.name(), why };
        match r.state {
            TapeState::Archived => {}
            TapeState::Available | TapeState::Retrieved | TapeState::Creating => {
                let elements = self.changer.elements().await;
                match elements.locate(barcode).and_then(|a| self.changer.layout().element_type(a)) {
                    Some(ElementType::ImportExport) => {
                        self.changer.remove_exported(barcode).await.map_err(|e| match e {
                            LibraryError::RemovalPrevented => TapeError::InvalidRequest(
                                "the application prevents medium removal; allow it, then delete again".into(),
                            ),
                            e => library_error(e),
                        })?;
                    }
                    None if r.state == TapeState::Creating => {}
                    _ => return Err(wrong("move it to an import/export slot first (a tape in a slot or drive is in use)")),
                }
            }
            _ => return Err(wrong("wait until it is ARCHIVED or RETRIEVED")),
        }
        self.store.close_tape(barcode, r.id).await?;
        self.delete_cloud_data(r.id).await?;
        self.store.remove(barcode)?;
        tracing::info!(barcode, "tape deleted");
        Ok(())
    }

    async fn delete_cloud_data(&self, id: u64) -> Result<(), TapeError> {
        let cloud = &self.store.engine.cloud;
        let ns = super::cached_tape::tape_namespace(id);
        let layout = cloud.keyring.layout().clone();
        let cloud_err = |e: crate::cloud::StoreError| TapeError::Cloud(e.to_string());
        for o in crate::cloud::store::list_all(&cloud.store, &layout.namespace_prefix(&ns)).await.map_err(cloud_err)? {
            crate::cloud::ObjectStore::delete(&cloud.store, &o.key).await.map_err(cloud_err)?;
        }
        crate::cloud::ObjectStore::delete(&cloud.store, &layout.data_key_key(&ns)).await.map_err(cloud_err)
    }
}

impl TargetCatalog for TapeLibrary {
    fn lookup(&self, name: &str) -> Option<Arc<Target>> {
        self.targets.read().unwrap_or_else(|e| e.into_inner()).iter().find(|t| t.name == name).cloned()
    }

    fn list(&self) -> Vec<Arc<Target>> {
        self.targets.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
