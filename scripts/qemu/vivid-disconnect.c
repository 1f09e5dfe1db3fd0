/* Unplugs a vivid camera for the QEMU tests: presses vivid's "Disconnect" error-injection
 * control, after which the driver answers ENODEV, as a USB camera pulled from its socket does,
 * until every open file handle is closed; then the device comes back. Built statically by
 * test-vivid.sh for the guest. Usage: vivid-disconnect [/dev/videoN] */
#include <fcntl.h>
#include <linux/videodev2.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* From the kernel's drivers/media/test-drivers/vivid/vivid-ctrls.c. */
#define VIVID_CID_VIVID_BASE (0x00f00000 | 0xf000)
#define VIVID_CID_DISCONNECT (VIVID_CID_VIVID_BASE + 65)

int main(int argc, char **argv) {
    const char *device = argc > 1 ? argv[1] : "/dev/video0";
    int fd = open(device, O_RDWR);
    if (fd < 0) {
        perror(device);
        return 1;
    }
    struct v4l2_control control = {.id = VIVID_CID_DISCONNECT, .value = 0};
    if (ioctl(fd, VIDIOC_S_CTRL, &control) < 0) {
        perror("VIDIOC_S_CTRL (vivid Disconnect)");
        return 1;
    }
    close(fd);
    printf("vivid-disconnect: %s unplugged\n", device);
    return 0;
}
