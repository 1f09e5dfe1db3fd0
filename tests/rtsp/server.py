#!/usr/bin/python3
"""A real RTSP server for outpost's tests: GStreamer's gst-rtsp-server (Debian's
gir1.2-gst-rtsp-server-1.0, run by /usr/bin/python3 through python3-gi), on 127.0.0.1 only.

It serves a live H.264 stream of a still image (the picture a model is checked on) or loops an
H.264 clip, with optional Basic or Digest authentication. It prints "ready PORT" once listening.

  server.py --port 0 --mount /cam --image astronaut.png [--size 640x480] [--profile main]
            [--auth basic|digest --user U --password P]
"""
import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402


def launch_line(args):
    width, height = args.size.split("x")
    # ultrafast turns CABAC off, which makes any stream Constrained Baseline.
    preset = "ultrafast" if args.profile == "baseline" else "superfast"
    encode = (
        f"x264enc tune=zerolatency speed-preset={preset} key-int-max={args.keyint} bframes=0 "
        f"! video/x-h264,profile={args.profile} ! rtph264pay name=pay0 pt=96 config-interval=-1"
    )
    if args.image:
        decoder = "jpegdec" if args.image.lower().endswith((".jpg", ".jpeg")) else "pngdec"
        return (
            f"( filesrc location={args.image} ! {decoder} ! imagefreeze is-live=true "
            f"! videoscale ! videoconvert ! video/x-raw,format=I420,width={width},height={height},"
            f"framerate={args.fps}/1 ! {encode} )"
        )
    return (
        f"( multifilesrc location={args.clip} loop=true ! qtdemux ! h264parse ! avdec_h264 "
        f"! videoconvert ! video/x-raw,format=I420 ! {encode} )"
    )


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--mount", default="/cam")
    p.add_argument("--image")
    p.add_argument("--clip")
    p.add_argument("--size", default="640x480")
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--keyint", type=int, default=50, help="frames between keyframes")
    p.add_argument("--profile", default="main", choices=["baseline", "main", "high"])
    p.add_argument("--auth", choices=["basic", "digest"])
    p.add_argument("--user", default="")
    p.add_argument("--password", default="")
    args = p.parse_args()
    if not (args.image or args.clip):
        p.error("--image or --clip is needed")

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args))
    factory.set_shared(True)
    if args.auth:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "user")
        if args.auth == "basic":
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.BASIC)
        else:
            auth.add_digest(args.user, args.password, token)
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("user", "media.factory.access", True)
        permissions.add_permission_for_role("user", "media.factory.construct", True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory(args.mount, factory)
    if server.attach(None) == 0:
        sys.exit("cannot listen on 127.0.0.1:%d" % args.port)
    print("ready %d" % server.get_bound_port(), flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
