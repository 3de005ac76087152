"""Check that .whl/ is a closed set for the GPU machine: every requirement of every wheel (markers evaluated
for CPython 3.12 on Linux x86-64, no extras) is met by a wheel here (version included) or by a package the
machine has (/work/.library/device/KINDS.md's list, when readable), except the ones left out on purpose."""

import re
import sys
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

OPTIONAL = {"debugpy", "jedi", "parso"}  # ipykernel's debugger and IPython's completion import them lazily
ENV = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux", "platform_system": "Linux",
       "platform_machine": "x86_64", "implementation_name": "cpython", "platform_python_implementation": "CPython",
       "os_name": "posix", "extra": ""}
# on the machine's image ('cuda'), among others; read from KINDS.md when present
PRESENT = {"aiohttp", "attrs", "click", "jinja2", "markdown-it-py", "mdurl", "packaging", "psutil", "pygments",
           "python-dateutil", "pyyaml", "requests", "six", "tqdm", "typing-extensions", "urllib3"}
kinds = Path("/work/.library/device/KINDS.md")
if kinds.is_file():
    m = re.search(r"Packages: (.*)\.\s*$", kinds.read_text(), re.S)
    PRESENT |= {canonicalize_name(x.strip()) for x in m.group(1).split(",")} if m else set()

wheels = {}
for w in sorted(Path(sys.argv[1] if len(sys.argv) > 1 else ".whl").glob("*.whl")):
    name, version, _, _ = parse_wheel_filename(w.name)
    if name in wheels:
        sys.exit(f"two wheels of {name}: keep one")
    wheels[name] = (version, w)
problems = []
for name, (version, w) in wheels.items():
    with zipfile.ZipFile(w) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    for line in meta.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        req = Requirement(line.split(":", 1)[1].strip())
        if req.marker is not None and not req.marker.evaluate(ENV):
            continue
        dep = canonicalize_name(req.name)
        if dep in wheels:
            if wheels[dep][0] not in req.specifier:
                problems.append(f"{name} needs {req}, .whl has {wheels[dep][0]}")
        elif dep not in PRESENT and dep not in OPTIONAL:
            problems.append(f"{name} needs {req}: neither a wheel here nor on the machine")
print(f"{len(wheels)} wheels, {sum(w.stat().st_size for _, w in wheels.values()) / 2**20:.1f} MiB")
if problems:
    sys.exit("\n".join(problems))
print("closed: every requirement is met (optional left out: " + ", ".join(sorted(OPTIONAL)) + ")")
