// Example custos YARA rule: an ELF file (any machine, executable or shared object) that
// carries a marker string. Copy this file into the rules directory to try YARA denial:
//   cp /bin/true /tmp/marked && printf 'CUSTOS-YARA-TEST-MARKER' >> /tmp/marked
// and /tmp/marked is then denied as `example_elf_marker:elf_with_custos_marker`.
import "elf"

rule elf_with_custos_marker : test elf
{
    meta:
        description = "ELF carrying the custos YARA test marker"
    strings:
        $marker = "CUSTOS-YARA-TEST-MARKER"
    condition:
        (elf.type == elf.ET_EXEC or elf.type == elf.ET_DYN)
        and for any s in elf.sections : (s.name == ".text")
        and $marker
}
