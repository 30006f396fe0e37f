use distributed_scope::{PeerId, RemoteStream, remote_stream};

fn f(server: PeerId, limit: u32) -> RemoteStream<u32> {
    remote_stream!(server, [limit] -> u32 { futures_util::stream::iter(0..limit) })
}

fn main() {}
