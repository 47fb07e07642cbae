"""Where every rack, monitor and group sits: the fleet -> data center -> sector -> rack tree.

How this works
--------------
A :class:`Layout` is pure arithmetic over three counts (data centers, sectors
per data center, racks per sector). Racks are named ``d{d}s{s}r{r}``, sectors
``d{d}s{s}``, data centers ``d{d}``, and the root is ``fleet``. Each rack has
one rack control and one monitor; their actor addresses come from two format
strings with a ``{rack}`` field, so a topology file decides which process hosts
them (defaults: ``mon-{rack}/monitor`` and ``rack-{rack}/control``).

Groups and their seats (FIGS. 4A-4C of the seed document):

* a sector's members are the monitors of its racks (fixed);
* a data center's seats are its sectors, each held by that sector's authority;
* the fleet's seats are the data centers, each held by the data center's authority.

The counts a running monitor uses are not simply the ones it was started with:
the fleet agrees on each change (one more sector per data center per
configuration epoch) and every monitor applies and keeps the agreed one
(:mod:`protocols.rack.monitor`, rule 8).

Seat holders change when authorities change, so the member list of an upper
group is not fixed: see :mod:`protocols.rack.monitor` for how a consensus
instance binds the holders it was started with.
"""

from __future__ import annotations

import re

import attrs

__all__ = ["FLEET", "NOT_OPERATIONAL", "OPERATIONAL", "Layout", "group_states", "rack_up", "state_of_seq"]

FLEET = "fleet"
OPERATIONAL = "operational"
NOT_OPERATIONAL = "not-operational"
UP_CONDITIONS = ("non-fault",)  # a rack serves only while its agreed condition is non-fault (detector.NON_FAULT)
_RACK = re.compile(r"^d(\d+)s(\d+)r(\d+)$")
_SECTOR = re.compile(r"^d(\d+)s(\d+)$")
_DC = re.compile(r"^d(\d+)$")


def _positive(_inst, attr, v) -> None:
    if v.__class__ is bool or not isinstance(v, int) or v < 1:
        raise ValueError(f"{attr.name} must be a positive int, got {v!r}")


def _fmt(_inst, attr, v) -> None:
    if not isinstance(v, str) or "{rack}" not in v or v.count("/") != 1:
        raise ValueError(f"{attr.name} must be a 'node/actor' format with a {{rack}} field, got {v!r}")


@attrs.frozen(slots=False)
class Layout:
    dcs: int = attrs.field(validator=_positive)
    sectors: int = attrs.field(validator=_positive)  # per data center
    racks: int = attrs.field(validator=_positive)  # per sector
    monitor_fmt: str = attrs.field(default="mon-{rack}/monitor", validator=_fmt)
    control_fmt: str = attrs.field(default="rack-{rack}/control", validator=_fmt)

    # -- names -------------------------------------------------------------------------
    def all_racks(self) -> list[str]:
        return [f"d{d}s{s}r{r}" for d in range(self.dcs) for s in range(self.sectors) for r in range(self.racks)]

    def sectors_of(self, dc: str) -> list[str]:
        return [f"{dc}s{s}" for s in range(self.sectors)]

    def all_dcs(self) -> list[str]:
        return [f"d{d}" for d in range(self.dcs)]

    def racks_of(self, sector: str) -> list[str]:
        return [f"{sector}r{r}" for r in range(self.racks)]

    def _memo(self, name: str) -> dict:
        """A per-instance table of answers (the layout is immutable; only valid names, so bounded by it)."""
        table = self.__dict__.get(name)
        if table is None:
            table = {}
            object.__setattr__(self, name, table)
        return table

    def monitor(self, rack: str) -> str:
        """The monitor's address; its format may also use ``{sector}``, ``{dc}`` and ``{r}`` (the rack's index)."""
        memo = self._memo("_monitor")
        out = memo.get(rack) if isinstance(rack, str) else None
        if out is None:
            d, s, r = self.check_rack(rack)
            out = memo[rack] = self.monitor_fmt.format(rack=rack, sector=f"d{d}s{s}", dc=f"d{d}", r=r)
        return out

    def control(self, rack: str) -> str:
        """The rack control's address; its format may also use ``{sector}`` and ``{dc}``."""
        return self.control_fmt.format(rack=rack, sector=self.sector_of(rack), dc=self.dc_of(rack))

    def all_monitors(self) -> list[str]:
        return [self.monitor(r) for r in self.all_racks()]

    # -- the tree ----------------------------------------------------------------------
    def check_rack(self, rack: str) -> tuple[int, int, int]:
        memo = self._memo("_check_rack")
        out = memo.get(rack) if isinstance(rack, str) else None
        if out is not None:
            return out
        m = _RACK.match(rack) if isinstance(rack, str) else None
        if m is None:
            raise ValueError(f"not a rack id: {rack!r} (expected d<D>s<S>r<R>)")
        d, s, r = (int(x) for x in m.groups())
        if d >= self.dcs or s >= self.sectors or r >= self.racks:
            raise ValueError(f"rack {rack!r} is outside the layout {self.dcs}x{self.sectors}x{self.racks}")
        memo[rack] = (d, s, r)
        return d, s, r

    def sector_of(self, rack: str) -> str:
        d, s, _ = self.check_rack(rack)
        return f"d{d}s{s}"

    def dc_of(self, rack_or_sector: str) -> str:
        memo = self._memo("_dc_of")
        out = memo.get(rack_or_sector) if isinstance(rack_or_sector, str) else None
        if out is None:
            m = _RACK.match(rack_or_sector) or _SECTOR.match(rack_or_sector)
            if m is None:
                raise ValueError(f"not a rack or sector id: {rack_or_sector!r}")
            out = f"d{m.group(1)}"
            if len(memo) < 4 * self.dcs * self.sectors * self.racks:  # (not checked against the layout: bounded)
                memo[rack_or_sector] = out
        return out

    def level(self, group: str) -> str:
        """``sector``, ``dc`` or ``fleet`` for a valid group id; ValueError otherwise."""
        if group == FLEET:
            return "fleet"
        memo = self._memo("_level")
        out = memo.get(group) if isinstance(group, str) else None
        if out is not None:
            return out
        m = _DC.match(group)
        if m and int(m.group(1)) < self.dcs:
            memo[group] = "dc"
            return "dc"
        m = _SECTOR.match(group)
        if m and int(m.group(1)) < self.dcs and int(m.group(2)) < self.sectors:
            memo[group] = "sector"
            return "sector"
        raise ValueError(f"not a group of this layout: {group!r}")

    def parent(self, group: str) -> str | None:
        lvl = self.level(group)
        if lvl == "sector":
            return self.dc_of(group)
        if lvl == "dc":
            return FLEET
        return None

    def seats(self, group: str) -> list[str]:
        """The child groups whose authorities hold the seats of an upper group."""
        lvl = self.level(group)
        if lvl == "dc":
            return self.sectors_of(group)
        if lvl == "fleet":
            return self.all_dcs()
        raise ValueError(f"{group!r} is a sector: its members are monitors, not seats")

    def sector_members(self, sector: str) -> list[str]:
        memo = self._memo("_sector_members")
        out = memo.get(sector) if isinstance(sector, str) else None
        if out is None:
            if self.level(sector) != "sector":
                raise ValueError(f"not a sector: {sector!r}")
            out = memo[sector] = tuple(self.monitor(r) for r in self.racks_of(sector))
        return list(out)

    def rack_of_monitor(self, address: str) -> str | None:
        """The rack whose monitor is at ``address`` (None if none is)."""
        table = self.__dict__.get("_by_monitor")
        if table is None:
            table = {self.monitor(r): r for r in self.all_racks()}
            object.__setattr__(self, "_by_monitor", table)
        return table.get(address)


# -- availability of groups (protocols.rack.monitor, "Availability of groups") -------------------


def rack_up(condition: str | None) -> bool:
    """A rack counts as up while its agreed condition is non-fault; with no agreed fact it has the seed's
    default condition (non-fault). Faulty, powered-off and rebooting racks are down."""
    return condition is None or condition in UP_CONDITIONS


def state_of_seq(seq: int) -> str:
    """A group fact's condition is fixed by its seq: even is operational, odd is not (seq 0: the default)."""
    return OPERATIONAL if seq % 2 == 0 else NOT_OPERATIONAL


def group_states(layout: Layout, conditions: dict, cut: frozenset | set = frozenset()) -> dict[str, tuple[str, str]]:
    """The stated rule: group -> (condition, reason) for every sector and data center of ``layout``.

    ``conditions``: rack -> its agreed condition (missing: no fact, the default non-fault); ``cut``: data
    centers the fleet cannot reach. A sector is operational while a strict majority of its racks are up
    (:func:`rack_up`); a data center while the fleet reaches it and a strict majority of its sectors are
    operational. Ties are not operational (the seed's conservative default for what cannot be vouched for).
    """
    out: dict[str, tuple[str, str]] = {}
    for d in layout.all_dcs():
        ok = 0
        sectors = layout.sectors_of(d)
        for s in sectors:
            racks = layout.racks_of(s)
            up = sum(rack_up(conditions.get(r)) for r in racks)
            good = 2 * up > len(racks)
            ok += good
            out[s] = (OPERATIONAL if good else NOT_OPERATIONAL, f"{up} of {len(racks)} racks up")
        if d in cut:
            out[d] = (NOT_OPERATIONAL, "cut off from the fleet")
        else:
            good = 2 * ok > len(sectors)
            out[d] = (OPERATIONAL if good else NOT_OPERATIONAL, f"{ok} of {len(sectors)} sectors operational")
    return out
