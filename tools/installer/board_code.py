"""The MicroPython that SerialBoard (board.py) sends to a board, one short program per request.

Each runs in the board's raw REPL and prints one Python literal back (read with
`ast.literal_eval`); all the work, hashing included, happens on the board, so what it
reports is what its flash holds. Only what every MicroPython port has is used: `os`,
`hashlib`, `binascii`, and `bluetooth` for the MAC. The `{...}` fields are filled with
`repr()`s of the arguments.
"""

INFO = ("import sys\ni=sys.implementation\n"
         "print(repr((sys.platform,tuple(i.version[:3]),getattr(i,'_machine',''),getattr(i,'_mpy',0))))")
MAC = ("import bluetooth\nb=bluetooth.BLE()\na=b.active()\nb.active(True)\nm=bytes(b.config('mac')[1])\n"
        "if not a:\n b.active(False)\nprint(repr(m))")
READ = ("try:\n f=open({path!r},'rb')\nexcept OSError:\n print('None')\nelse:\n"
         " print(repr(f.read()))\n f.close()")
HASHES = """import hashlib,binascii
def _h(p):
 try:
  f=open(p,'rb')
 except OSError:
  return None
 h=hashlib.sha256()
 b=bytearray(512)
 m=memoryview(b)
 while True:
  n=f.readinto(b)
  if not n:
   break
  h.update(m[:n])
 f.close()
 return binascii.hexlify(h.digest()).decode()
print(repr([_h(p) for p in {paths!r}]))"""
MAKEDIRS = """import os
p=''
for d in {path!r}.split('/'):
 p=p+d
 try:
  os.mkdir(p)
 except OSError:
  pass
 p=p+'/'"""
# littlefs renames over an existing file atomically; FAT refuses, so remove first there.
RENAME = """import os
for s,d in {pairs!r}:
 try:
  os.rename(s,d)
 except OSError:
  try:
   os.remove(d)
  except OSError:
   pass
  os.rename(s,d)"""
REMOVE = """import os
for p in {paths!r}:
 try:
  os.remove(p)
 except OSError:
  pass"""
FILES = """import os
def _walk(d, out):
 try:
  found = list(os.ilistdir(d))
 except OSError:
  return
 for e in found:
  p = d + '/' + e[0]
  if e[1] == 0x4000:
   _walk(p, out)
  else:
   out.append(p)
o = []
_walk({folder!r}, o)
print(repr(o))"""
FREE = "import os\ns=os.statvfs('')\nprint(s[0]*s[4])"


