"""Every message an installer sees, in Chinese (zh-CN) and English: one catalogue.

The language is `--lang`, else the locale (LC_ALL, LC_MESSAGES, LANG: anything starting
with "zh" is Chinese), else English. Code never builds an installer-facing sentence
itself: it names a key here and gives the values. Values that are words (a role, an
event, a signal verdict, a device) are put into the message's language as well.
A test checks that every key has both languages with the same placeholders.
"""

from __future__ import annotations

import os
import string
from collections.abc import Mapping
from typing import Any

LANGUAGES = ("zh", "en")

ROLE_NAMES = {
    "pendant": ("居家宝（呼叫挂件）", "pendant"),
    "front_door": ("大门门磁", "front-door sensor"),
    "toilet_door": ("卫生间门磁", "toilet-door sensor"),
}
EVENT_NAMES = {
    "emergency": ("紧急求助按钮", "emergency button"),
    "community_service": ("社区服务按钮", "community-service button"),
    "life_service": ("生活服务按钮", "daily-life-service button"),
    "door_opened": ("开门", "door opened"),
    "door_closed": ("关门", "door closed"),
}
# What the installer is asked to do for each check.
ACTION_NAMES = {
    "emergency": ("按一下紧急求助按钮", "press the emergency button"),
    "community_service": ("按一下社区服务按钮", "press the community-service button"),
    "life_service": ("按一下生活服务按钮", "press the daily-life-service button"),
    "door_opened": ("打开门", "open the door"),
    "door_closed": ("关上门", "close the door"),
}
SIGNAL_NAMES = {
    "good": ("良好", "good"),
    "marginal": ("勉强", "marginal"),
    "fail": ("不合格", "FAIL"),
    None: ("未测到", "not measured"),
}
STATUS_NAMES = {
    "passed": ("通过", "passed"),
    "hub": ("仅到网关", "hub only"),
    "waiting": ("未收到", "not received"),
    "refused": ("平台拒收", "refused by the platform"),
}

# key: (Chinese, English)
MESSAGES: dict[str, tuple[str, str]] = {
    # -- boards -------------------------------------------------------------------------
    "board_not_found": (
        "没有找到设备：请用数据线（不是只能充电的线）把设备插到这台电脑的 USB 口上，再试一次。"
        "Linux 上当前用户需要在 dialout 组里。也可以用 --port 指定串口。",
        "No board found: plug the device into this computer's USB port with a data cable "
        "(not a charge-only one) and try again. On Linux your user must be in the dialout group. "
        "Or name the port with --port."),
    "board_several": (
        "找到了多个设备（{ports}）：请只插一个，或用 --port 指定要用的那个。",
        "Several boards found ({ports}): plug in only one, or name it with --port."),
    "board_cannot_open": (
        "打不开串口 {port}：可能被别的程序（串口监视器、另一个安装命令）占用了，或者设备已拔出。",
        "Cannot open the serial port {port}: another program (a serial monitor, another installer "
        "command) may be using it, or the device was unplugged."),
    "board_not_micropython": (
        "{port} 上的设备没有像 MicroPython 那样应答。它可能还没装 MicroPython（见 tools/installer/README.md 的"
        "“给新的 ESP32 装 MicroPython”），或者正在休眠：按一下设备上的 RST/EN 键后马上再试。",
        "The board on {port} does not answer like MicroPython. It may not have MicroPython yet "
        "(see \"MicroPython on a new ESP32\" in tools/installer/README.md), or it is asleep: "
        "press its RST/EN button and try again at once."),
    "board_gone": (
        "设备在 {port} 上断开了（拔线或没电了）。重新插好后再运行同一条命令：已完成的部分会被检查，"
        "没完成的会重做，设备不会处于半装状态。",
        "The board on {port} went away (unplugged, or it lost power). Plug it back in and run the "
        "same command again: what was done is checked, the rest is redone, and the board is never "
        "left half-installed."),
    "board_full": (
        "{port} 上设备的存储空间满了。请先用 mpremote 删除不需要的文件，或者重新安装 MicroPython（会清空存储）。",
        "The board on {port} is out of storage space. Remove files it does not need (mpremote rm), "
        "or put MicroPython on it afresh (which empties its storage)."),
    "board_full_before": (
        "设备存储空间不够：需要约 {need_kb} KB，只剩 {free_kb} KB。设备上什么都没改。",
        "Not enough space on the board: about {need_kb} KB needed, {free_kb} KB free. Nothing on "
        "the board was changed."),
    "board_error": (
        "设备 {port} 执行命令出错：{detail}",
        "The board on {port} reported an error: {detail}"),
    "board_no_bluetooth": (
        "设备 {port} 读不到蓝牙地址（{detail}）。这块板子的 MicroPython 可能没有蓝牙：请装带蓝牙的 ESP32 版本。",
        "Cannot read the Bluetooth address of the board on {port} ({detail}). Its MicroPython may "
        "have no Bluetooth: install the ESP32 build that has it."),
    "board_wrong_platform": (
        "这块板子（{machine}）运行的是 {platform} 版的 MicroPython；居家安全盒的固件只能用在 ESP32 上。",
        "This board ({machine}) runs MicroPython for {platform}; the safebox firmware runs on ESP32 "
        "boards only."),
    "board_version_too_old": (
        "这块板子上是 MicroPython {found}，需要 {need} 或更新的版本。请先给它装新版 MicroPython"
        "（见 tools/installer/README.md），设备上什么都没改。",
        "This board has MicroPython {found}; safebox needs {need} or newer. Put a newer MicroPython "
        "on it first (see tools/installer/README.md). Nothing on the board was changed."),
    "board_mpy_mismatch": (
        "这块板子上的 MicroPython {found} 读取 .mpy 格式 {board_mpy}，而固件是格式 {image_mpy}。"
        "请给板子装与 mpy-cross 匹配的 MicroPython 版本。设备上什么都没改。",
        "MicroPython {found} on this board loads .mpy format {board_mpy}; the firmware image is "
        "format {image_mpy}. Put a MicroPython that matches mpy-cross on it. Nothing on the board "
        "was changed."),
    "image_missing": (
        "{folder} 里没有完整的固件镜像（main.py 和 lib/）。",
        "{folder} does not hold a device image (main.py and lib/)."),
    # -- flash --------------------------------------------------------------------------
    "flash_building": ("正在编译固件……", "Building the firmware image..."),
    "flash_board_ok": (
        "设备：{machine}，MicroPython {version}。",
        "Board: {machine}, MicroPython {version}."),
    "flash_up_to_date": (
        "设备上已经是这个固件（{image_id}），校验一致，无需复制。",
        "The board already has this firmware ({image_id}); checked, nothing to copy."),
    "flash_copying": (
        "正在复制 {files} 个文件（{kb} KB）……",
        "Copying {files} files ({kb} KB)..."),
    "flash_progress": ("复制", "copying"),
    "flash_copy_corrupt": (
        "复制到设备上的文件校验不一致：{files}。设备仍在用原来的固件；请再运行一次。"
        "如果反复出现，请换一根数据线。",
        "Files on the board do not match what was sent: {files}. The board still runs its previous "
        "firmware; run the command again. If it keeps happening, try another cable."),
    "flash_verify_failed": (
        "最后校验不一致：{files}。请再运行一次 flash。",
        "The final check found differences: {files}. Run flash again."),
    "flash_done": (
        "完成：复制了 {copied} 个文件（{kb} KB），{unchanged} 个未变，设备上每个文件的 sha256 都已核对。固件 {image_id}。",
        "Done: {copied} files copied ({kb} KB), {unchanged} unchanged; every file's sha256 checked "
        "on the board. Firmware {image_id}."),
    "flash_next_pair": (
        "下一步：safebox-install pair --port {port} --role pendant --room 卧室",
        "Next: safebox-install pair --port {port} --role pendant --room bedroom"),
    # -- pairing ------------------------------------------------------------------------
    "pair_unknown_role": (
        "没有“{role}”这种设备类型。可用的类型：{roles}。什么都没改。",
        "There is no device role \"{role}\". Roles: {roles}. Nothing was changed."),
    "pair_unknown_board": (
        "没有“{board}”这种板子。可用的：{boards}。什么都没改。",
        "There is no board \"{board}\". Boards: {boards}. Nothing was changed."),
    "pair_bad_room": (
        "房间名“{room}”不能用：{detail}。什么都没改。",
        "The room name \"{room}\" cannot be used: {detail}. Nothing was changed."),
    "pair_bad_config": (
        "设备配置不对：{detail}。什么都没改。",
        "The device configuration is not right: {detail}. Nothing was changed."),
    "pair_not_flashed": (
        "{port} 上的设备还没有完整的固件。请先运行：safebox-install flash --port {port}",
        "The board on {port} has no complete firmware yet. First run: safebox-install flash --port {port}"),
    "pair_image_damaged": (
        "{port} 上设备的固件文件损坏了（{files}）。请先重新运行：safebox-install flash --port {port}",
        "The firmware on the board on {port} is damaged ({files}). First run again: "
        "safebox-install flash --port {port}"),
    "pair_other_home": (
        "设备 {mac} 属于另一个家（{home}，网关 {hub}）。一个设备只能属于一个家：请先在那边的网关上解除配对；"
        "如果那个家已不存在，可以用 safebox-install unpair --port ... --force 清除它。什么都没改。",
        "Device {mac} belongs to another home ({home}, hub {hub}). A device belongs to one home "
        "only: unpair it on that home's hub first; if that home no longer exists, wipe it with "
        "safebox-install unpair --port ... --force. Nothing was changed."),
    "pair_unknown_owner": (
        "设备 {mac} 里已经有配对密钥，但看不出是哪个家的。确定要在这里重新配对，请加 --replace。什么都没改。",
        "Device {mac} already holds a pairing key, from a home it does not name. To pair it here "
        "anyway, add --replace. Nothing was changed."),
    "pair_already_paired": (
        "设备 {mac} 已经配对在这个家里（{role}，房间：{room}）。要换新密钥重新配对请加 --replace，"
        "或者先 unpair。什么都没改。",
        "Device {mac} is already paired in this home ({role}, room: {room}). To pair it again with "
        "a new key add --replace, or unpair it first. Nothing was changed."),
    "pair_writing": (
        "正在把配置和新密钥写入设备 {mac}（密钥不显示）……",
        "Writing the configuration and a new key to device {mac} (the key is not shown)..."),
    "pair_registering": (
        "正在网关 {hub} 上登记设备……",
        "Registering the device with hub {hub}..."),
    "pair_hub_failed": (
        "网关登记失败：{detail}。设备上的配置已恢复原样，网关也没有改。",
        "Registering with the hub failed: {detail}. The device's configuration was put back as it "
        "was, and the hub is unchanged."),
    "pair_resetting": (
        "正在重启设备，等它报告……",
        "Restarting the device and waiting for it to report..."),
    "pair_device_refused": (
        "设备 {mac} 没能用这个配置启动，它报告：{line}。配对已撤销（设备和网关都恢复原样）。"
        "请检查设备类型和接线，或者先 flash 新固件。",
        "Device {mac} did not start with this configuration; it said: {line}. The pairing was undone "
        "on the device and the hub. Check the role and the wiring, or flash newer firmware first."),
    "pair_device_refused_board_kept": (
        "设备 {mac} 没能用这个配置启动，它报告：{line}。网关上的登记已撤销；设备上的配置没能改回，"
        "请插好后运行 safebox-install unpair --port ...",
        "Device {mac} did not start with this configuration; it said: {line}. The hub's entry was "
        "undone; the device's could not be, so plug it in and run safebox-install unpair --port ..."),
    "pair_done": (
        "已配对：{role} {mac}，房间：{room}，家：{home}（网关 {hub}）。密钥在本机生成，只保存在设备和网关上，不显示。",
        "Paired: {role} {mac}, room: {room}, home: {home} (hub {hub}). The key was made here and is "
        "kept only on the device and the hub; it is not shown."),
    "pair_done_replaced": (
        "旧密钥已在设备和网关上作废，网关已忘记旧的计数器。",
        "The old key is gone from the device and the hub, and the hub has forgotten the old counter."),
    "pair_boot_ready": (
        "设备已启动并报告正常。",
        "The device started and reports ready."),
    "pair_boot_warning": (
        "设备能工作，但自检提示：{line}",
        "The device works, but its self-test says: {line}"),
    "pair_boot_unknown": (
        "看不到设备的启动信息（有的板子重启时 USB 会断开）。请看设备的指示灯，或者马上做走测。",
        "The device's start could not be seen (some boards drop USB while they restart). Watch its "
        "LED, or go on to the walk test."),
    "pair_next_walk": (
        "所有设备配对完后，做走测：safebox-install walk-test --hub-config {config}",
        "When every device is paired, walk-test the home: safebox-install walk-test --hub-config {config}"),
    "unpair_other_home": (
        "设备 {mac} 属于另一个家（{home}，网关 {hub}），不能在这里解除配对。确定要清除它，请加 --force。",
        "Device {mac} belongs to another home ({home}, hub {hub}); it cannot be unpaired here. To "
        "wipe it anyway, add --force."),
    "unpair_not_paired": (
        "设备 {mac} 没有配对在这个家里。",
        "Device {mac} is not paired in this home."),
    "unpair_hub_done": (
        "已从网关 {hub} 删除设备 {mac}，并忘记了它的计数器。",
        "Device {mac} removed from hub {hub}, and its counter forgotten."),
    "unpair_board_done": (
        "已清除设备 {mac} 上的配对密钥。",
        "The pairing key on device {mac} was wiped."),
    "unpair_board_clean": (
        "设备 {mac} 上本来就没有配对。",
        "Device {mac} held no pairing."),
    "hub_registry_unreadable": (
        "读不了网关的设备列表 {path}：{detail}",
        "Cannot read the hub's device list {path}: {detail}"),
    "hub_config_error": (
        "网关配置有问题：{detail}",
        "The hub configuration has a problem: {detail}"),
    # -- enrolment ----------------------------------------------------------------------
    "enrol_prompt": ("请输入平台给的登记码：", "Enrolment code from the platform: "),
    "enrol_sending": (
        "网关 {hub} 正在向平台 {url} 登记它的公钥……",
        "Hub {hub} is registering its public key with the platform at {url}..."),
    "enrol_done": (
        "登记成功：平台已记下网关 {hub} 的公钥。",
        "Enrolled: the platform now knows hub {hub}'s public key."),
    "enrol_already": (
        "这个网关已经用这个登记码登记过了，无需再做。",
        "This hub was already enrolled with this code; nothing more to do."),
    "enrol_replaced": (
        "平台上这个网关原来的公钥已被替换（例如换了网关的存储卡）。",
        "The platform replaced the key it had for this hub (for example after the hub's card was replaced)."),
    "enrol_code_unknown": (
        "平台不认识这个登记码。请核对（只含数字和字母，不分大小写），或向平台要一个新的。网关没有登记。",
        "The platform does not know this enrolment code. Check it (digits and letters, any case), "
        "or ask the platform for a new one. The hub is not enrolled."),
    "enrol_code_expired": (
        "这个登记码已过期：{detail}。请向平台要一个新的。网关没有登记。",
        "This enrolment code has expired: {detail}. Ask the platform for a new one. The hub is not enrolled."),
    "enrol_code_used": (
        "这个登记码已经用过了：{detail}。每个码只能用一次，请向平台要一个新的。网关没有登记。",
        "This enrolment code was already used: {detail}. Each code works once; ask the platform "
        "for a new one. The hub is not enrolled."),
    "enrol_wrong_hub": (
        "这个登记码不是给这个网关的：{detail}。请核对 hub.toml 里的 hub_id，或要一个给本网关的码。",
        "This enrolment code is not for this hub: {detail}. Check hub_id in hub.toml, or ask for a "
        "code for this hub."),
    "enrol_refused": (
        "平台拒绝登记（{status}）：{detail}",
        "The platform refused the enrolment ({status}): {detail}"),
    "enrol_busy": (
        "平台暂时忙（{detail}），请过一会儿再试。",
        "The platform is busy ({detail}); try again in a little while."),
    "enrol_unreachable": (
        "连不上平台 {url}：{detail}。请检查网关的网络和 hub.toml 里的 platform.url。",
        "Cannot reach the platform at {url}: {detail}. Check the hub's network and platform.url in hub.toml."),
    "enrol_tls": (
        "平台 {url} 的 TLS 证书验证失败：{detail}。证书验证不能关闭；如果平台用自己的 CA，请在 hub.toml 里设置 platform.ca_file。",
        "The TLS certificate of the platform at {url} did not verify: {detail}. Verification cannot "
        "be switched off; if the platform uses its own CA, set platform.ca_file in hub.toml."),
    "enrol_hub_key": (
        "网关密钥不能用：{detail}",
        "The hub's key cannot be used: {detail}"),
    # -- walk test ----------------------------------------------------------------------
    "walk_hub_db_error": (
        "读不了网关的数据库 {path}：{detail}",
        "Cannot read the hub's database {path}: {detail}"),
    "walk_no_devices": (
        "这个家还没有配对任何设备，先用 safebox-install pair 配对。",
        "No device is paired in this home yet: pair them first with safebox-install pair."),
    "walk_start": (
        "走测：家 {home}（网关 {hub}），{devices} 个设备，{checks} 项检查。"
        "信号：≥ {good} dBm 良好，{good} 到 {marginal} dBm 勉强，低于 {marginal} dBm 不合格。",
        "Walk test of home {home} (hub {hub}): {devices} devices, {checks} checks. Signal: "
        ">= {good} dBm good, {good} to {marginal} dBm marginal, below {marginal} dBm fail."),
    "walk_platform_unreadable": (
        "读不到平台的事件列表（{url}：{detail}）：改为以网关的发送记录为准。",
        "The platform's event list cannot be read ({url}: {detail}); the hub's delivery record is used instead."),
    "walk_device_heard": (
        "{device}：",
        "{device}:"),
    "walk_device_not_heard": (
        "{device}：网关还没收到过它（设备在第一次按键或心跳前不发信号）。如果下面的检查一直没有反应，请确认已装电池、已开机。",
        "{device}: not heard by the hub yet (a device is quiet until its first press or heartbeat). "
        "If the checks below get no answer, check it has a battery and is switched on."),
    "walk_todo": (
        "  [ ] {action}",
        "  [ ] {action}"),
    "walk_hub": (
        "网关收到 {device} 的{event}：信号 {rssi} dBm（{signal}），电量 {battery}%",
        "hub heard {device}: {event}, signal {rssi} dBm ({signal}), battery {battery}%"),
    "walk_hub_again": (
        "（再次）网关收到 {device} 的{event}：信号 {rssi} dBm（{signal}），电量 {battery}%",
        "(again) hub heard {device}: {event}, signal {rssi} dBm ({signal}), battery {battery}%"),
    "walk_platform": (
        "  平台已保存 {event_id}（{event}），网关到平台 {latency_ms} 毫秒  [通过]",
        "  platform stored {event_id} ({event}), {latency_ms} ms after the hub  [passed]"),
    "walk_refused": (
        "  平台拒收 {event_id}（{event}）：{reason}  [失败]",
        "  platform refused {event_id} ({event}): {reason}  [FAILED]"),
    "walk_next": (
        "下一项（还剩 {left} 项）：{device}：{action}",
        "Next ({left} left): {device}: {action}"),
    "walk_passed": (
        "走测通过。",
        "Walk test passed."),
    "walk_failed": (
        "走测没有通过：{problems}",
        "Walk test failed: {problems}"),
    "walk_problem_missing": (
        "{device} 的{event}没有收到",
        "{event} of {device} not received"),
    "walk_problem_hub_only": (
        "{device} 的{event}到了网关但没到平台",
        "{event} of {device} reached the hub but not the platform"),
    "walk_problem_refused": (
        "{device} 的{event}被平台拒收",
        "{event} of {device} refused by the platform"),
    "walk_problem_signal": (
        "{device} 信号太弱（{rssi} dBm）：把网关挪近些，或加一个网关",
        "{device} signal too weak ({rssi} dBm): move the hub closer, or add one"),
    "walk_problem_battery": (
        "{device} 电量低（{battery}%）：请换电池",
        "{device} battery low ({battery}%): replace it"),
    "walk_interrupted": (
        "走测被中断。",
        "Walk test interrupted."),
    "walk_report_written": (
        "安装报告已保存：{md}（以及 {json}）",
        "Install report written: {md} (and {json})"),
    # -- the report ---------------------------------------------------------------------
    "report_title": ("居家安全盒安装报告", "Safebox install report"),
    "report_home": ("家", "Home"),
    "report_hub": ("网关", "Hub"),
    "report_platform": ("平台", "Platform"),
    "report_installer": ("安装人员", "Installer"),
    "report_time": ("走测时间", "Walk test"),
    "report_result": ("结果", "Result"),
    "report_pass": ("通过", "PASSED"),
    "report_fail": ("未通过", "FAILED"),
    "report_devices": ("设备", "Devices"),
    "report_checks": ("检查项", "Checks"),
    "report_col_device": ("设备", "Device"),
    "report_col_role": ("类型", "Role"),
    "report_col_room": ("房间", "Room"),
    "report_col_battery": ("电量", "Battery"),
    "report_col_signal": ("信号（最弱/最强）", "Signal (weakest/strongest)"),
    "report_col_rssi": ("信号", "Signal"),
    "report_col_verdict": ("信号评价", "Signal verdict"),
    "report_col_checks": ("检查", "Checks"),
    "report_col_check": ("检查", "Check"),
    "report_col_status": ("状态", "Status"),
    "report_col_event": ("事件编号", "Event id"),
    "report_col_at": ("平台保存时间", "Stored at the platform"),
    "report_thresholds": (
        "信号评价：RSSI ≥ {good} dBm 良好；{good} 到 {marginal} dBm 勉强（可用，但建议把网关挪近）；"
        "低于 {marginal} dBm 不合格。电量低于 {battery}% 不合格。",
        "Signal verdict: RSSI >= {good} dBm good; {good} to {marginal} dBm marginal (works; move the "
        "hub closer if you can); below {marginal} dBm fail. A battery below {battery}% fails."),
    "report_problems": ("问题", "Problems"),
    "report_none": ("无", "none"),
    "report_unknown": ("（未填）", "(not given)"),
    # -- the command line ---------------------------------------------------------------
    "cli_interrupted": ("已中断。", "Interrupted."),
    "cli_permission": (
        "没有权限：{path}。请用网关服务的用户运行（例如 sudo -u safebox ...），或加 sudo。",
        "Permission denied: {path}. Run as the hub service's user (e.g. sudo -u safebox ...), or with sudo."),
    "cli_bad_pin": (
        "--pin 要写成 名称=GPIO号，例如 --pin emergency=13，而不是“{value}”",
        "--pin takes NAME=GPIO, e.g. --pin emergency=13, not \"{value}\""),
    "cli_need_board_or_device": (
        "请给出 --port（设备插在本机）或 --device（设备不在手边，只从网关删除）。",
        "Give --port (the device is plugged in here) or --device (it is not at hand: remove it from the hub only)."),
    "cli_report_read_error": (
        "读不了报告 {path}：{detail}",
        "Cannot read the report {path}: {detail}"),
    # -- the practice lab ---------------------------------------------------------------
    "lab_ready": (
        "练习环境已就绪（模拟的家，真实固件）：\n"
        "  空白设备的串口：{port}\n  网关配置：{config}\n  平台数据库：{db}\n  网关 id：{hub}\n"
        "按 Ctrl-C 结束。",
        "The practice lab is ready (a simulated home, real firmware):\n"
        "  blank board's serial port: {port}\n  hub config: {config}\n  platform database: {db}\n"
        "  hub id: {hub}\nCtrl-C ends it."),
    "lab_pressed": ("已按下 {what}。", "Pressed {what}."),
    "lab_not_running": (
        "练习环境没有在运行（{dir} 里没有 lab.json）。先运行：safebox-install lab --dir {dir}",
        "The practice lab is not running (no lab.json in {dir}). Start it: safebox-install lab --dir {dir}"),
    "lab_no_firmware": (
        "练习设备的固件没有在运行：先 flash、pair（pair 会重启设备）。",
        "The practice board's firmware is not running: flash and pair it first (pair restarts it)."),
    "lab_bad_input": (
        "练习设备没有“{name}”这个输入。可以用：{names}",
        "The practice board has no input \"{name}\". Inputs: {names}"),
}


class InstallerError(Exception):
    """A refusal or a failure the installer can act on: a message key and its values.

    `str()` gives the English text; the CLI shows it in the chosen language.
    """

    def __init__(self, key: str, **params: Any) -> None:
        if key not in MESSAGES:
            raise KeyError(f"no message {key!r}")
        super().__init__(key)
        self.key = key
        self.params = params

    def text(self, lang: str | None = None) -> str:
        return t(self.key, lang, **self.params)

    def __str__(self) -> str:
        return self.text("en")


_current = "en"


def detect_language(env: Mapping[str, str] | None = None) -> str:
    """The locale's language: "zh" for any zh_* locale, else "en"."""
    env = os.environ if env is None else env
    for name in ("LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"):
        value = env.get(name, "")
        if value:
            return "zh" if value.lower().startswith("zh") else "en"
    return "en"


def set_language(lang: str | None) -> str:
    """Use `lang` ("zh", "en", "zh-CN", "zh_CN.UTF-8"...), or the locale's when None."""
    global _current
    if lang is None:
        _current = detect_language()
    else:
        _current = "zh" if lang.lower().startswith("zh") else "en"
    return _current


def language() -> str:
    return _current


def _pick(pair: tuple[str, str], lang: str) -> str:
    return pair[0] if lang == "zh" else pair[1]


def role_name(role: str, lang: str | None = None) -> str:
    return _pick(ROLE_NAMES[role], lang or _current) if role in ROLE_NAMES else role


def event_name(event: str, lang: str | None = None) -> str:
    return _pick(EVENT_NAMES[event], lang or _current) if event in EVENT_NAMES else event


def action_name(event: str, lang: str | None = None) -> str:
    return _pick(ACTION_NAMES[event], lang or _current) if event in ACTION_NAMES else event


def signal_name(verdict: str | None, lang: str | None = None) -> str:
    return _pick(SIGNAL_NAMES.get(verdict, SIGNAL_NAMES[None]), lang or _current)


def status_name(status: str, lang: str | None = None) -> str:
    return _pick(STATUS_NAMES[status], lang or _current) if status in STATUS_NAMES else status


def device_label(device: Any, lang: str | None = None) -> str:
    """"pendant 24:0A:C4:00:00:01 (bedroom)" from a hub Device or a report's device dict."""
    lang = lang or _current
    get = device.get if isinstance(device, dict) else lambda name: getattr(device, name)
    role, address, room = role_name(get("role"), lang), get("address"), get("room")
    if lang == "zh":
        return f"{role} {address}（{room or '未填房间'}）"
    return f"{role} {address} ({room or 'no room'})"


def t(key: str, lang: str | None = None, **params: Any) -> str:
    """The message `key` in `lang` (default: the current language), with its values filled in."""
    lang = lang or _current
    values = dict(params)
    if "device" in values and not isinstance(values["device"], str):
        values["device"] = device_label(values["device"], lang)
    if "event" in values:
        values.setdefault("action", action_name(values["event"], lang))
        values["event"] = event_name(values["event"], lang)
    if "signal" in values:
        values["signal"] = signal_name(values["signal"], lang)
    if "role" in values:
        values["role"] = role_name(values["role"], lang)
    return _pick(MESSAGES[key], lang).format(**values)


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}
