//! A scripted HDFS peer for the fetcher tests: a fake NameNode (Hadoop IPC, SIMPLE auth, no
//! SASL) and a fake DataNode (data transfer protocol version 28, READ_BLOCK only) on 127.0.0.1.
//!
//! This is NOT a real HDFS. It speaks just enough of both protocols for a client read: the
//! NameNode answers `getBlockLocations` (the blocks overlapping the asked range; a missing path
//! is the NameNode's FileNotFoundException), `getFileInfo` (a file, a directory on the way to
//! one, or an empty answer for a missing path, as a NameNode does) and `getServerDefaults`
//! (no encrypted data transfer, so clients skip SASL on DataNode connections); any other method
//! gets an RPC error naming it, and every call is recorded so a test can see what the client
//! asked. The DataNode serves the requested byte range of a block like a DataNode's
//! BlockSender: from the start of the checksum chunk holding the offset (`chunk_offset`) to a
//! chunk boundary or the block's end, as packets carrying CRC32C checksums, then an empty last
//! packet, and waits for the client's read status; it serves ops until the client closes.
//! Message and field numbers follow Hadoop's ClientNamenodeProtocol.proto, hdfs.proto,
//! acl.proto, datatransfer.proto, RpcHeader.proto, IpcConnectionContext.proto and
//! ProtobufRpcEngine.proto (as vendored by the `hdfs-native` crate).
//!
//! Verified: Hadoop 3.3.4's own client (hadoop-client-api/-runtime from pyspark's jars)
//! accepts it: `getFileStatus`, a whole-file read across blocks and packets with every CRC32C
//! checked (CHECKSUM_OK per block), a positional read starting mid-chunk across a block
//! boundary, and FileNotFoundException for a missing path (test
//! `hdfs_fake_is_read_identically_by_hadoops_own_client_and_ours`).
//!
//! Several NameNodes and DataNodes can run over one namespace, each with a role
//! ([`NameNodeRole`], [`DataNodeRole`]): a standby NameNode answering every call with the RPC
//! error Hadoop's standby sends, a DataNode whose replica is missing (READ_BLOCK answered with
//! status ERROR), or a peer that is down (its port refuses connections). Every block is listed
//! on every DataNode, in the order given. Not verified: behaviour only a real NameNode/DataNode
//! has (block tokens, files under construction, a DataNode dying mid-transfer),
//! SASL/Kerberos, encryption, observer NameNodes.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Every read from a client is bounded by this.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest RPC frame / delimited message the fake accepts.
const MAX_FRAME: usize = 1 << 20;

// ---- RpcHeader.proto / ProtobufRpcEngine.proto ----

#[derive(Clone, PartialEq, prost::Message)]
struct RpcRequestHeaderProto {
    #[prost(int32, optional, tag = "1")]
    rpc_kind: Option<i32>,
    #[prost(int32, optional, tag = "2")]
    rpc_op: Option<i32>,
    #[prost(sint32, tag = "3")]
    call_id: i32,
    #[prost(bytes = "vec", tag = "4")]
    client_id: Vec<u8>,
    #[prost(sint32, optional, tag = "5")]
    retry_count: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RequestHeaderProto {
    #[prost(string, tag = "1")]
    method_name: String,
    #[prost(string, tag = "2")]
    declaring_class_protocol_name: String,
    #[prost(uint64, tag = "3")]
    client_protocol_version: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RpcResponseHeaderProto {
    #[prost(uint32, required, tag = "1")]
    call_id: u32,
    /// SUCCESS = 0, ERROR = 1, FATAL = 2.
    #[prost(int32, required, tag = "2")]
    status: i32,
    #[prost(uint32, optional, tag = "3")]
    server_ipc_version_num: Option<u32>,
    #[prost(string, optional, tag = "4")]
    exception_class_name: Option<String>,
    #[prost(string, optional, tag = "5")]
    error_msg: Option<String>,
    /// ERROR_APPLICATION = 1, ERROR_NO_SUCH_METHOD = 2.
    #[prost(int32, optional, tag = "6")]
    error_detail: Option<i32>,
    #[prost(bytes = "vec", optional, tag = "7")]
    client_id: Option<Vec<u8>>,
    /// Hadoop's server echoes the request's retry count (-1 when the client sent none).
    #[prost(sint32, optional, tag = "8")]
    retry_count: Option<i32>,
}

// ---- IpcConnectionContext.proto ----

#[derive(Clone, PartialEq, prost::Message)]
struct UserInformationProto {
    #[prost(string, optional, tag = "1")]
    effective_user: Option<String>,
    #[prost(string, optional, tag = "2")]
    real_user: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct IpcConnectionContextProto {
    #[prost(message, optional, tag = "2")]
    user_info: Option<UserInformationProto>,
    #[prost(string, optional, tag = "3")]
    protocol: Option<String>,
}

// ---- Security.proto / hdfs.proto ----

#[derive(Clone, PartialEq, prost::Message)]
struct TokenProto {
    #[prost(bytes = "vec", required, tag = "1")]
    identifier: Vec<u8>,
    #[prost(bytes = "vec", required, tag = "2")]
    password: Vec<u8>,
    #[prost(string, required, tag = "3")]
    kind: String,
    #[prost(string, required, tag = "4")]
    service: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ExtendedBlockProto {
    #[prost(string, required, tag = "1")]
    pool_id: String,
    #[prost(uint64, required, tag = "2")]
    block_id: u64,
    #[prost(uint64, required, tag = "3")]
    generation_stamp: u64,
    #[prost(uint64, optional, tag = "4")]
    num_bytes: Option<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct DatanodeIdProto {
    #[prost(string, required, tag = "1")]
    ip_addr: String,
    #[prost(string, required, tag = "2")]
    host_name: String,
    #[prost(string, required, tag = "3")]
    datanode_uuid: String,
    #[prost(uint32, required, tag = "4")]
    xfer_port: u32,
    #[prost(uint32, required, tag = "5")]
    info_port: u32,
    #[prost(uint32, required, tag = "6")]
    ipc_port: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct DatanodeInfoProto {
    #[prost(message, required, tag = "1")]
    id: DatanodeIdProto,
}

#[derive(Clone, PartialEq, prost::Message)]
struct LocatedBlockProto {
    #[prost(message, required, tag = "1")]
    b: ExtendedBlockProto,
    #[prost(uint64, required, tag = "2")]
    offset: u64,
    #[prost(message, repeated, tag = "3")]
    locs: Vec<DatanodeInfoProto>,
    #[prost(bool, required, tag = "4")]
    corrupt: bool,
    #[prost(message, required, tag = "5")]
    block_token: TokenProto,
}

#[derive(Clone, PartialEq, prost::Message)]
struct LocatedBlocksProto {
    #[prost(uint64, required, tag = "1")]
    file_length: u64,
    #[prost(message, repeated, tag = "2")]
    blocks: Vec<LocatedBlockProto>,
    #[prost(bool, required, tag = "3")]
    under_construction: bool,
    #[prost(message, optional, tag = "4")]
    last_block: Option<LocatedBlockProto>,
    #[prost(bool, required, tag = "5")]
    is_last_block_complete: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
struct FsServerDefaultsProto {
    #[prost(uint64, required, tag = "1")]
    block_size: u64,
    #[prost(uint32, required, tag = "2")]
    bytes_per_checksum: u32,
    #[prost(uint32, required, tag = "3")]
    write_packet_size: u32,
    #[prost(uint32, required, tag = "4")]
    replication: u32,
    #[prost(uint32, required, tag = "5")]
    file_buffer_size: u32,
    #[prost(bool, optional, tag = "6")]
    encrypt_data_transfer: Option<bool>,
    #[prost(uint64, optional, tag = "7")]
    trash_interval: Option<u64>,
    /// ChecksumTypeProto: CHECKSUM_NULL = 0, CHECKSUM_CRC32 = 1, CHECKSUM_CRC32C = 2.
    #[prost(int32, optional, tag = "8")]
    checksum_type: Option<i32>,
}

// ---- ClientNamenodeProtocol.proto ----

#[derive(Clone, PartialEq, prost::Message)]
struct GetBlockLocationsRequestProto {
    #[prost(string, required, tag = "1")]
    src: String,
    #[prost(uint64, required, tag = "2")]
    offset: u64,
    #[prost(uint64, required, tag = "3")]
    length: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct GetBlockLocationsResponseProto {
    #[prost(message, optional, tag = "1")]
    locations: Option<LocatedBlocksProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct GetServerDefaultsResponseProto {
    #[prost(message, required, tag = "1")]
    server_defaults: FsServerDefaultsProto,
}

#[derive(Clone, PartialEq, prost::Message)]
struct GetFileInfoRequestProto {
    #[prost(string, required, tag = "1")]
    src: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct GetFileInfoResponseProto {
    /// Absent when the path does not exist (the client turns that into FileNotFoundException).
    #[prost(message, optional, tag = "1")]
    fs: Option<HdfsFileStatusProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct FsPermissionProto {
    #[prost(uint32, required, tag = "1")]
    perm: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct HdfsFileStatusProto {
    /// FileType: IS_DIR = 1, IS_FILE = 2, IS_SYMLINK = 3.
    #[prost(int32, required, tag = "1")]
    file_type: i32,
    /// Local name of the inode; empty for the path asked about (getFileInfo).
    #[prost(bytes = "vec", required, tag = "2")]
    path: Vec<u8>,
    #[prost(uint64, required, tag = "3")]
    length: u64,
    #[prost(message, required, tag = "4")]
    permission: FsPermissionProto,
    #[prost(string, required, tag = "5")]
    owner: String,
    #[prost(string, required, tag = "6")]
    group: String,
    #[prost(uint64, required, tag = "7")]
    modification_time: u64,
    #[prost(uint64, required, tag = "8")]
    access_time: u64,
    #[prost(uint32, optional, tag = "10")]
    block_replication: Option<u32>,
    #[prost(uint64, optional, tag = "11")]
    blocksize: Option<u64>,
    #[prost(uint64, optional, tag = "13")]
    file_id: Option<u64>,
    #[prost(int32, optional, tag = "14")]
    children_num: Option<i32>,
    #[prost(uint32, optional, tag = "16")]
    storage_policy: Option<u32>,
    #[prost(uint32, optional, tag = "18")]
    flags: Option<u32>,
}

// ---- datatransfer.proto ----

#[derive(Clone, PartialEq, prost::Message)]
struct BaseHeaderProto {
    #[prost(message, required, tag = "1")]
    block: ExtendedBlockProto,
    #[prost(message, optional, tag = "2")]
    token: Option<TokenProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ClientOperationHeaderProto {
    #[prost(message, required, tag = "1")]
    base_header: BaseHeaderProto,
    #[prost(string, required, tag = "2")]
    client_name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct OpReadBlockProto {
    #[prost(message, required, tag = "1")]
    header: ClientOperationHeaderProto,
    #[prost(uint64, required, tag = "2")]
    offset: u64,
    #[prost(uint64, required, tag = "3")]
    len: u64,
    #[prost(bool, optional, tag = "4")]
    send_checksums: Option<bool>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ChecksumProto {
    #[prost(int32, required, tag = "1")]
    r#type: i32,
    #[prost(uint32, required, tag = "2")]
    bytes_per_checksum: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ReadOpChecksumInfoProto {
    #[prost(message, required, tag = "1")]
    checksum: ChecksumProto,
    #[prost(uint64, required, tag = "2")]
    chunk_offset: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct BlockOpResponseProto {
    /// Status: SUCCESS = 0, ERROR = 1, ..., CHECKSUM_OK = 6.
    #[prost(int32, required, tag = "1")]
    status: i32,
    #[prost(message, optional, tag = "4")]
    read_op_checksum_info: Option<ReadOpChecksumInfoProto>,
    #[prost(string, optional, tag = "5")]
    message: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PacketHeaderProto {
    #[prost(sfixed64, required, tag = "1")]
    offset_in_block: i64,
    #[prost(sfixed64, required, tag = "2")]
    seqno: i64,
    #[prost(bool, required, tag = "3")]
    last_packet_in_block: bool,
    #[prost(sfixed32, required, tag = "4")]
    data_len: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ClientReadStatusProto {
    #[prost(int32, required, tag = "1")]
    status: i32,
}

const DATA_TRANSFER_VERSION: u16 = 28;
const OP_READ_BLOCK: u8 = 81;
const STATUS_SUCCESS: i32 = 0;
const STATUS_ERROR: i32 = 1;
const STATUS_CHECKSUM_OK: i32 = 6;
const CHECKSUM_CRC32C: i32 = 2;
const FILE_TYPE_DIR: i32 = 1;
const FILE_TYPE_FILE: i32 = 2;
const POOL_ID: &str = "BP-fake-127.0.0.1";

/// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), bitwise; test data is small.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// How the fake cuts files and packets.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub block_size: usize,
    pub packet_data: usize,
    pub bytes_per_checksum: usize,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            block_size: 64 * 1024,
            packet_data: 16 * 1024,
            bytes_per_checksum: 512,
        }
    }
}

/// What one fake NameNode does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameNodeRole {
    /// Answers client calls.
    Active,
    /// Answers every call with the RPC error a standby NameNode sends (see
    /// [`standby_error_msg`]): status ERROR, ERROR_APPLICATION,
    /// `org.apache.hadoop.ipc.StandbyException`.
    Standby,
    /// A port that refuses connections (a socket bound, never listening).
    Down,
}

/// What one fake DataNode does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataNodeRole {
    /// Serves READ_BLOCK.
    Serve,
    /// Answers every READ_BLOCK with status ERROR, as a DataNode whose replica is gone does
    /// (DataXceiver.readBlock: `opReadBlock <block> received exception ...`), then closes.
    ReplicaMissing,
    /// A port that refuses connections (a socket bound, never listening).
    Down,
}

/// One RPC call a fake NameNode received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NnCall {
    /// Index of the NameNode in the roles given to [`FakeHdfs::start_with`].
    pub namenode: usize,
    pub method: String,
    /// `"ok"`, or the exception class name of the RPC error answered.
    pub answer: String,
}

/// One READ_BLOCK a fake DataNode received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnOp {
    /// Index of the DataNode in the roles given to [`FakeHdfs::start_with`].
    pub datanode: usize,
    pub block: u64,
    pub offset: u64,
    pub len: u64,
    /// Whether the DataNode answered SUCCESS and sent the data.
    pub served: bool,
}

#[derive(Default)]
struct State {
    files: HashMap<String, Arc<Vec<u8>>>,
    /// block id -> (file path, offset of the block in the file, length)
    blocks: HashMap<u64, (String, usize, usize)>,
    next_block: u64,
    /// file path -> inode id reported by getFileInfo
    file_ids: HashMap<String, u64>,
    /// Method names of every RPC call the NameNodes received, in order.
    calls: Vec<String>,
    /// The same calls with the NameNode that got each and what it answered.
    nn_calls: Vec<NnCall>,
    /// (protocol name, effective user) from each connection context.
    contexts: Vec<(String, String)>,
    /// (block id, offset, len) of every READ_BLOCK the DataNodes received.
    reads: Vec<(u64, u64, u64)>,
    /// The same READ_BLOCKs with the DataNode that got each and whether it served it.
    dn_ops: Vec<DnOp>,
    /// Packets sent by the DataNodes (including the empty last ones).
    packets: usize,
    /// CHECKSUM_OK statuses received back from the client.
    read_ok: usize,
    /// Anything the fake did not understand.
    errors: Vec<String>,
}

/// Running fake NameNodes and DataNodes sharing one namespace. Dropping it stops them all.
pub struct FakeHdfs {
    /// The first active NameNode.
    pub nn_port: u16,
    /// The first serving DataNode.
    pub dn_port: u16,
    /// Every NameNode's port, in the order of the roles given.
    pub nn_ports: Vec<u16>,
    /// Every DataNode's port, in the order of the roles given: the order in which
    /// `getBlockLocations` lists them for every block.
    pub dn_ports: Vec<u16>,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A socket for a peer that is down: bound (so no one else takes the port while the fake
/// lives) and never listening, so connecting to it is refused.
pub fn refusing_port() -> (tokio::net::TcpSocket, u16) {
    let s = tokio::net::TcpSocket::new_v4().expect("socket");
    s.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let port = s.local_addr().expect("local addr").port();
    (s, port)
}

impl FakeHdfs {
    /// One active NameNode and one serving DataNode.
    pub fn start(layout: Layout) -> FakeHdfs {
        FakeHdfs::start_with(layout, &[NameNodeRole::Active], &[DataNodeRole::Serve])
    }

    /// NameNodes and DataNodes with the given roles. Every block is listed on every DataNode,
    /// in the order given.
    pub fn start_with(
        layout: Layout,
        namenodes: &[NameNodeRole],
        datanodes: &[DataNodeRole],
    ) -> FakeHdfs {
        let state = Arc::new(Mutex::new(State {
            next_block: 1_073_741_825,
            ..Default::default()
        }));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        let nn_roles = namenodes.to_vec();
        let dn_roles = datanodes.to_vec();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("fake HDFS runtime");
            rt.block_on(async move {
                // Held until the fake stops, so a down peer's port stays refused and taken.
                let mut down = Vec::new();
                let mut nn_listeners = Vec::new();
                let mut nn_ports = Vec::new();
                for role in &nn_roles {
                    if *role == NameNodeRole::Down {
                        let (s, port) = refusing_port();
                        down.push(s);
                        nn_ports.push(port);
                    } else {
                        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind nn");
                        nn_ports.push(l.local_addr().expect("nn addr").port());
                        nn_listeners.push((nn_ports.len() - 1, *role, l));
                    }
                }
                let mut dn_listeners = Vec::new();
                let mut dn_ports = Vec::new();
                for role in &dn_roles {
                    if *role == DataNodeRole::Down {
                        let (s, port) = refusing_port();
                        down.push(s);
                        dn_ports.push(port);
                    } else {
                        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind dn");
                        dn_ports.push(l.local_addr().expect("dn addr").port());
                        dn_listeners.push((dn_ports.len() - 1, *role, l));
                    }
                }
                addr_tx
                    .send((nn_ports.clone(), dn_ports.clone()))
                    .expect("send ports");
                let dn_ports = Arc::new(dn_ports);
                for (index, role, l) in nn_listeners {
                    let st = st.clone();
                    let dn_ports = dn_ports.clone();
                    tokio::spawn(async move {
                        loop {
                            let Ok((s, _)) = l.accept().await else {
                                continue;
                            };
                            let st = st.clone();
                            let dn_ports = dn_ports.clone();
                            tokio::spawn(async move {
                                let nn = NameNode {
                                    index,
                                    role,
                                    layout,
                                    dn_ports,
                                };
                                if let Err(e) = namenode_conn(s, st.clone(), nn).await {
                                    note_eof_or_error(&st, "namenode", e);
                                }
                            });
                        }
                    });
                }
                for (index, role, l) in dn_listeners {
                    let st = st.clone();
                    tokio::spawn(async move {
                        loop {
                            let Ok((s, _)) = l.accept().await else {
                                continue;
                            };
                            let st = st.clone();
                            tokio::spawn(async move {
                                if let Err(e) =
                                    datanode_conn(s, st.clone(), layout, index, role).await
                                {
                                    note_eof_or_error(&st, "datanode", e);
                                }
                            });
                        }
                    });
                }
                let _ = stop_rx.await;
                drop(down);
            });
            rt.shutdown_timeout(Duration::from_secs(2));
        });
        let (nn_ports, dn_ports): (Vec<u16>, Vec<u16>) = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("fake HDFS ports");
        let first = |ports: &[u16], pick: &dyn Fn(usize) -> bool| {
            (0..ports.len())
                .find(|i| pick(*i))
                .map_or(ports[0], |i| ports[i])
        };
        FakeHdfs {
            nn_port: first(&nn_ports, &|i| namenodes[i] == NameNodeRole::Active),
            dn_port: first(&dn_ports, &|i| datanodes[i] == DataNodeRole::Serve),
            nn_ports,
            dn_ports,
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Stores a file at `path`, cut into blocks of the layout's block size.
    pub fn put(&self, path: &str, data: Vec<u8>, layout: Layout) {
        let mut st = self.state.lock().unwrap();
        let len = data.len();
        st.files.insert(path.to_string(), Arc::new(data));
        let id = 16_400 + st.file_ids.len() as u64;
        st.file_ids.entry(path.to_string()).or_insert(id);
        let mut off = 0;
        while off < len {
            let n = layout.block_size.min(len - off);
            let id = st.next_block;
            st.next_block += 1;
            st.blocks.insert(id, (path.to_string(), off, n));
            off += n;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("hdfs://127.0.0.1:{}{}", self.nn_port, path)
    }

    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }
    pub fn contexts(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().contexts.clone()
    }
    pub fn reads(&self) -> Vec<(u64, u64, u64)> {
        self.state.lock().unwrap().reads.clone()
    }
    /// Every RPC call with the NameNode that received it and its answer, in order.
    pub fn namenode_calls(&self) -> Vec<NnCall> {
        self.state.lock().unwrap().nn_calls.clone()
    }
    /// Every READ_BLOCK with the DataNode that received it and whether it served it, in order.
    pub fn datanode_ops(&self) -> Vec<DnOp> {
        self.state.lock().unwrap().dn_ops.clone()
    }
    pub fn packets(&self) -> usize {
        self.state.lock().unwrap().packets
    }
    pub fn read_ok(&self) -> usize {
        self.state.lock().unwrap().read_ok
    }
    /// [`FakeHdfs::read_ok`] once it reaches `n`, or what it is after 10 s: a client sends its
    /// read status after the block's last packet, so it may land after the fetch has returned.
    pub fn wait_read_ok(&self, n: usize) -> usize {
        let start = std::time::Instant::now();
        loop {
            let got = self.read_ok();
            if got >= n || start.elapsed() > Duration::from_secs(10) {
                return got;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    pub fn errors(&self) -> Vec<String> {
        self.state.lock().unwrap().errors.clone()
    }
}

impl Drop for FakeHdfs {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn note_eof_or_error(st: &Arc<Mutex<State>>, who: &str, e: std::io::Error) {
    if e.kind() != std::io::ErrorKind::UnexpectedEof {
        st.lock().unwrap().errors.push(format!("{who}: {e}"));
    }
}

fn bad(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

async fn read_exact_t<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> std::io::Result<()> {
    match tokio::time::timeout(IO_TIMEOUT, r.read_exact(buf)).await {
        Ok(r) => r.map(|_| ()),
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "fake HDFS: client silent",
        )),
    }
}

/// Reads a varint-length-delimited message from a socket.
async fn read_delimited<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Vec<u8>> {
    let mut len: u64 = 0;
    for i in 0..10 {
        let mut b = [0u8; 1];
        read_exact_t(r, &mut b).await?;
        len |= ((b[0] & 0x7f) as u64) << (7 * i);
        if b[0] < 0x80 {
            break;
        }
    }
    if len as usize > MAX_FRAME {
        return Err(bad(format!("delimited message of {len} bytes")));
    }
    let mut buf = vec![0u8; len as usize];
    read_exact_t(r, &mut buf).await?;
    Ok(buf)
}

/// One fake NameNode's settings, for each of its connections.
struct NameNode {
    index: usize,
    role: NameNodeRole,
    layout: Layout,
    dn_ports: Arc<Vec<u16>>,
}

/// The class a standby NameNode names in its RPC error.
pub const STANDBY_EXCEPTION: &str = "org.apache.hadoop.ipc.StandbyException";

/// What a standby NameNode puts in `error_msg` for a client call (all the fake knows are READ
/// operations). Hadoop's StandbyState.checkOperation throws
/// `StandbyException("Operation category READ is not supported in state standby. Visit
/// https://s.apache.org/sbnn-error")`; ipc.Server sends it with status ERROR, error detail
/// ERROR_APPLICATION, the class name in `exception_class_name`, and the stringified exception
/// (its message, then the server's stack trace) minus the leading `<class>: ` in `error_msg`.
/// The fake sends the message line and a short trace.
pub fn standby_error_msg() -> String {
    "Operation category READ is not supported in state standby. \
     Visit https://s.apache.org/sbnn-error\n\
     \tat org.apache.hadoop.hdfs.server.namenode.ha.StandbyState.checkOperation(StandbyState.java)\n\
     \tat org.apache.hadoop.hdfs.server.namenode.NameNode$NameNodeHAContext.checkOperation(NameNode.java)"
        .to_string()
}

async fn namenode_conn(
    mut s: TcpStream,
    st: Arc<Mutex<State>>,
    nn: NameNode,
) -> std::io::Result<()> {
    let mut head = [0u8; 7];
    read_exact_t(&mut s, &mut head).await?;
    if &head[..4] != b"hrpc" || head[4] != 9 || head[5] != 0 || head[6] != 0 {
        return Err(bad(format!("connection header {head:?}")));
    }
    loop {
        let mut lenb = [0u8; 4];
        read_exact_t(&mut s, &mut lenb).await?;
        let len = u32::from_be_bytes(lenb) as usize;
        if len > MAX_FRAME {
            return Err(bad(format!("RPC frame of {len} bytes")));
        }
        let mut frame = vec![0u8; len];
        read_exact_t(&mut s, &mut frame).await?;
        let mut buf = &frame[..];
        let rpc = RpcRequestHeaderProto::decode_length_delimited(&mut buf)
            .map_err(|e| bad(format!("RpcRequestHeaderProto: {e}")))?;
        if rpc.call_id == -3 {
            let ctx = IpcConnectionContextProto::decode_length_delimited(&mut buf)
                .map_err(|e| bad(format!("IpcConnectionContextProto: {e}")))?;
            let user = ctx
                .user_info
                .and_then(|u| u.effective_user)
                .unwrap_or_default();
            st.lock()
                .unwrap()
                .contexts
                .push((ctx.protocol.unwrap_or_default(), user));
            continue;
        }
        let req = RequestHeaderProto::decode_length_delimited(&mut buf)
            .map_err(|e| bad(format!("RequestHeaderProto: {e}")))?;
        let answer = match nn.role {
            NameNodeRole::Standby => Err((STANDBY_EXCEPTION.to_string(), standby_error_msg(), 1)),
            _ => answer_call(&req.method_name, buf, &st, nn.layout, &nn.dn_ports),
        };
        {
            let mut g = st.lock().unwrap();
            g.calls.push(req.method_name.clone());
            g.nn_calls.push(NnCall {
                namenode: nn.index,
                method: req.method_name.clone(),
                answer: match &answer {
                    Ok(_) => "ok".to_string(),
                    Err((class, _, _)) => class.clone(),
                },
            });
        }
        let retry_count = Some(rpc.retry_count.unwrap_or(-1));
        let mut out = Vec::new();
        match answer {
            Ok(body) => {
                RpcResponseHeaderProto {
                    call_id: rpc.call_id as u32,
                    status: 0,
                    server_ipc_version_num: Some(9),
                    client_id: Some(rpc.client_id.clone()),
                    retry_count,
                    ..Default::default()
                }
                .encode_length_delimited(&mut out)
                .map_err(|e| bad(e.to_string()))?;
                out.extend_from_slice(&body);
            }
            Err((class, msg, detail)) => {
                RpcResponseHeaderProto {
                    call_id: rpc.call_id as u32,
                    status: 1,
                    server_ipc_version_num: Some(9),
                    exception_class_name: Some(class),
                    error_msg: Some(msg),
                    error_detail: Some(detail),
                    client_id: Some(rpc.client_id.clone()),
                    retry_count,
                }
                .encode_length_delimited(&mut out)
                .map_err(|e| bad(e.to_string()))?;
            }
        }
        s.write_all(&(out.len() as u32).to_be_bytes()).await?;
        s.write_all(&out).await?;
        s.flush().await?;
    }
}

type RpcFailure = (String, String, i32);

fn answer_call(
    method: &str,
    mut body: &[u8],
    st: &Arc<Mutex<State>>,
    layout: Layout,
    dn_ports: &[u16],
) -> Result<Vec<u8>, RpcFailure> {
    match method {
        "getBlockLocations" => {
            let req =
                GetBlockLocationsRequestProto::decode_length_delimited(&mut body).map_err(|e| {
                    (
                        "java.io.IOException".to_string(),
                        format!("bad request: {e}"),
                        1,
                    )
                })?;
            let st = st.lock().unwrap();
            let Some(data) = st.files.get(&req.src) else {
                // What a real NameNode does for a path that does not exist.
                return Err((
                    "java.io.FileNotFoundException".to_string(),
                    format!("File does not exist: {}", req.src),
                    1,
                ));
            };
            let mut all: Vec<LocatedBlockProto> = st
                .blocks
                .iter()
                .filter(|(_, (p, _, _))| *p == req.src)
                .map(|(id, (_, off, n))| located_block(*id, *off, *n, dn_ports))
                .collect();
            all.sort_by_key(|b| b.offset);
            // Like a NameNode: the blocks overlapping [offset, offset + length), and always the
            // file's last block as `last_block`.
            let end = req.offset.saturating_add(req.length);
            let last = all.last().cloned();
            let blocks = all
                .into_iter()
                .filter(|b| b.offset < end && b.offset + b.b.num_bytes.unwrap_or(0) > req.offset)
                .collect();
            let resp = GetBlockLocationsResponseProto {
                locations: Some(LocatedBlocksProto {
                    file_length: data.len() as u64,
                    blocks,
                    under_construction: false,
                    last_block: last,
                    is_last_block_complete: true,
                }),
            };
            Ok(resp.encode_length_delimited_to_vec())
        }
        "getFileInfo" => {
            let req = GetFileInfoRequestProto::decode_length_delimited(&mut body).map_err(|e| {
                (
                    "java.io.IOException".to_string(),
                    format!("bad request: {e}"),
                    1,
                )
            })?;
            let st = st.lock().unwrap();
            Ok(GetFileInfoResponseProto {
                fs: file_status(&st, &req.src, layout),
            }
            .encode_length_delimited_to_vec())
        }
        "getServerDefaults" => Ok(GetServerDefaultsResponseProto {
            server_defaults: FsServerDefaultsProto {
                block_size: layout.block_size as u64,
                bytes_per_checksum: layout.bytes_per_checksum as u32,
                write_packet_size: 64 * 1024,
                replication: 1,
                file_buffer_size: 4096,
                encrypt_data_transfer: Some(false),
                trash_interval: Some(0),
                checksum_type: Some(CHECKSUM_CRC32C),
            },
        }
        .encode_length_delimited_to_vec()),
        other => Err((
            "org.apache.hadoop.ipc.RpcNoSuchMethodException".to_string(),
            format!("fake NameNode does not implement {other}"),
            2,
        )),
    }
}

fn located_block(id: u64, off: usize, n: usize, dn_ports: &[u16]) -> LocatedBlockProto {
    LocatedBlockProto {
        b: ExtendedBlockProto {
            pool_id: POOL_ID.to_string(),
            block_id: id,
            generation_stamp: 1001,
            num_bytes: Some(n as u64),
        },
        offset: off as u64,
        locs: dn_ports
            .iter()
            .map(|dn_port| DatanodeInfoProto {
                id: DatanodeIdProto {
                    ip_addr: "127.0.0.1".to_string(),
                    host_name: "localhost".to_string(),
                    datanode_uuid: format!("fake-dn-{dn_port}"),
                    xfer_port: *dn_port as u32,
                    info_port: 0,
                    ipc_port: 0,
                },
            })
            .collect(),
        corrupt: false,
        block_token: TokenProto::default(),
    }
}

/// What a NameNode's getFileInfo answers: a stored file, a directory on the way to one
/// (including `/`), or nothing (the path does not exist; that is not an RPC error).
fn file_status(st: &State, src: &str, layout: Layout) -> Option<HdfsFileStatusProto> {
    const MTIME_MS: u64 = 1_700_000_000_000;
    let status = |file_type, length, perm, file_id, children_num| HdfsFileStatusProto {
        file_type,
        path: Vec::new(),
        length,
        permission: FsPermissionProto { perm },
        owner: "croupier".to_string(),
        group: "supergroup".to_string(),
        modification_time: MTIME_MS,
        access_time: MTIME_MS,
        block_replication: Some(if file_type == FILE_TYPE_FILE { 1 } else { 0 }),
        blocksize: Some(if file_type == FILE_TYPE_FILE {
            layout.block_size as u64
        } else {
            0
        }),
        file_id: Some(file_id),
        children_num: Some(children_num),
        storage_policy: Some(0),
        flags: Some(0),
    };
    if let Some(data) = st.files.get(src) {
        let id = st.file_ids.get(src).copied().unwrap_or(0);
        return Some(status(FILE_TYPE_FILE, data.len() as u64, 0o644, id, 0));
    }
    let dir = format!("{}/", src.trim_end_matches('/'));
    let children: std::collections::BTreeSet<&str> = st
        .files
        .keys()
        .filter_map(|f| f.strip_prefix(&dir))
        .filter_map(|rest| rest.split('/').next())
        .collect();
    if children.is_empty() {
        return None;
    }
    // 16385 is the root's inode id in HDFS; the fake does not number other directories apart.
    let id = if src == "/" { 16_385 } else { 16_386 };
    Some(status(FILE_TYPE_DIR, 0, 0o755, id, children.len() as i32))
}

async fn datanode_conn(
    mut s: TcpStream,
    st: Arc<Mutex<State>>,
    layout: Layout,
    index: usize,
    role: DataNodeRole,
) -> std::io::Result<()> {
    // The client keeps DataNode connections for reuse: serve ops until it closes.
    loop {
        let mut vb = [0u8; 2];
        read_exact_t(&mut s, &mut vb).await?;
        let version = u16::from_be_bytes(vb);
        let mut op = [0u8; 1];
        read_exact_t(&mut s, &mut op).await?;
        if version != DATA_TRANSFER_VERSION || op[0] != OP_READ_BLOCK {
            return Err(bad(format!(
                "data transfer version {version}, op {}",
                op[0]
            )));
        }
        let msg = read_delimited(&mut s).await?;
        let req = OpReadBlockProto::decode(&msg[..])
            .map_err(|e| bad(format!("OpReadBlockProto: {e}")))?;
        let block = req.header.base_header.block.block_id;
        let (op_at, found) = {
            let mut g = st.lock().unwrap();
            g.reads.push((block, req.offset, req.len));
            let op_at = g.dn_ops.len();
            g.dn_ops.push(DnOp {
                datanode: index,
                block,
                offset: req.offset,
                len: req.len,
                served: false,
            });
            let found = g
                .blocks
                .get(&block)
                .cloned()
                .and_then(|(p, off, n)| g.files.get(&p).map(|d| (d.clone(), off, n)));
            (op_at, found)
        };
        if role == DataNodeRole::ReplicaMissing {
            // What DataXceiver.readBlock answers when BlockSender cannot open the replica.
            let b = format!(
                "{POOL_ID}:blk_{block}_{}",
                req.header.base_header.block.generation_stamp
            );
            let resp = BlockOpResponseProto {
                status: STATUS_ERROR,
                message: Some(format!(
                    "opReadBlock {b} received exception \
                     org.apache.hadoop.hdfs.server.datanode.ReplicaNotFoundException: \
                     Replica not found for {b}"
                )),
                ..Default::default()
            };
            s.write_all(&resp.encode_length_delimited_to_vec()).await?;
            return Ok(());
        }
        let Some((data, boff, blen)) = found else {
            let resp = BlockOpResponseProto {
                status: STATUS_ERROR,
                message: Some(format!("fake DataNode has no block {block}")),
                ..Default::default()
            };
            s.write_all(&resp.encode_length_delimited_to_vec()).await?;
            return Ok(());
        };
        // Like a DataNode's BlockSender: a range outside the block is refused; the range served
        // starts at the checksum chunk holding `offset` (reported as `chunk_offset`) and ends at
        // a chunk boundary or the block's end, so every chunk sent has its own checksum.
        let bpc = layout.bytes_per_checksum as u64;
        let (offset, len) = (req.offset, req.len);
        if offset > blen as u64 || offset.saturating_add(len) > blen as u64 {
            let resp = BlockOpResponseProto {
                status: STATUS_ERROR,
                message: Some(format!(
                    "offset {offset} and length {len} don't match block {block} (length {blen})"
                )),
                ..Default::default()
            };
            s.write_all(&resp.encode_length_delimited_to_vec()).await?;
            return Ok(());
        }
        let start = (offset - offset % bpc) as usize;
        let end = ((offset + len).div_ceil(bpc) * bpc).min(blen as u64) as usize;
        let resp = BlockOpResponseProto {
            status: STATUS_SUCCESS,
            read_op_checksum_info: Some(ReadOpChecksumInfoProto {
                checksum: ChecksumProto {
                    r#type: CHECKSUM_CRC32C,
                    bytes_per_checksum: layout.bytes_per_checksum as u32,
                },
                chunk_offset: start as u64,
            }),
            message: None,
        };
        s.write_all(&resp.encode_length_delimited_to_vec()).await?;
        st.lock().unwrap().dn_ops[op_at].served = true;
        let bytes = &data[boff + start..boff + end];
        let mut seqno = 0i64;
        let mut pos = start;
        for chunk in bytes.chunks(layout.packet_data) {
            write_packet(&mut s, pos as i64, seqno, false, chunk, layout).await?;
            st.lock().unwrap().packets += 1;
            pos += chunk.len();
            seqno += 1;
        }
        write_packet(&mut s, pos as i64, seqno, true, &[], layout).await?;
        st.lock().unwrap().packets += 1;
        s.flush().await?;
        let status = read_delimited(&mut s).await?;
        let status = ClientReadStatusProto::decode(&status[..])
            .map_err(|e| bad(format!("ClientReadStatusProto: {e}")))?;
        if status.status == STATUS_CHECKSUM_OK {
            st.lock().unwrap().read_ok += 1;
        } else {
            return Err(bad(format!("client read status {}", status.status)));
        }
    }
}

async fn write_packet(
    s: &mut TcpStream,
    offset_in_block: i64,
    seqno: i64,
    last: bool,
    data: &[u8],
    layout: Layout,
) -> std::io::Result<()> {
    let header = PacketHeaderProto {
        offset_in_block,
        seqno,
        last_packet_in_block: last,
        data_len: data.len() as i32,
    }
    .encode_to_vec();
    let mut sums = Vec::new();
    for c in data.chunks(layout.bytes_per_checksum) {
        sums.extend_from_slice(&crc32c(c).to_be_bytes());
    }
    // The payload length counts itself (4 bytes), the checksums and the data.
    let payload_len = (4 + sums.len() + data.len()) as u32;
    let mut out = Vec::with_capacity(6 + header.len() + sums.len() + data.len());
    out.extend_from_slice(&payload_len.to_be_bytes());
    out.extend_from_slice(&(header.len() as u16).to_be_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&sums);
    out.extend_from_slice(data);
    s.write_all(&out).await
}
