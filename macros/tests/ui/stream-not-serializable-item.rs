use distributed_scope::{PeerId, RemoteStream, remote_stream};

struct Secret(u32);

fn f(server: PeerId) -> RemoteStream<Secret> {
    remote_stream!(server, [] -> Secret { futures_util::stream::iter([Secret(1)]) })
}

fn main() {}
