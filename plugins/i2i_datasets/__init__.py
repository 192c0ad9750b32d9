"""Built-in plugin: the named-dataset catalogue behind ``--data NAME`` (``i2i list datasets``).

The archives are the ones the reference (junyanz/pytorch-CycleGAN-and-pix2pix) downloads. Their
publishers give no checksums or sizes and we could not fetch them to pin any, so ``sha256`` and
``size_bytes`` are None here: such a download is checked only against its Content-Length. When a
checksum is given (a third-party catalogue, or a future pin here), the download verifies it.

Where a CycleGAN archive shares its name with a pix2pix one (facades, maps, cityscapes), the
paired pix2pix version keeps the plain name and the unpaired one is ``cyclegan_<name>``.
"""

from __future__ import annotations

import i2i

PIX2PIX_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/{}.tar.gz"
CYCLEGAN_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/{}.zip"

#: name -> (description, licence / terms); A|B side-by-side JPEGs in train/, val/, test/
PIX2PIX: dict[str, tuple[str, str]] = {
    "facades": ("pix2pix: 606 building facades, photo | label map (label->photo is BtoA)",
                "CMP Facade Database, research use"),
    "cityscapes": ("pix2pix: 3,475 street scenes, photo | semantic labels", "Cityscapes terms, non-commercial"),
    "maps": ("pix2pix: 2,194 aerial photo | Google map tiles", "scraped from Google Maps, research use"),
    "edges2shoes": ("pix2pix: 50k shoe photos with HED edges, edges | photo", "UT Zappos50K, research use"),
    "edges2handbags": ("pix2pix: ~137k handbag photos with HED edges, edges | photo", "iGAN Amazon handbags, research use"),
    "night2day": ("pix2pix: outdoor webcam frames, night | day", "Transient Attributes, research use"),
}

#: CycleGAN archive name -> (catalogue name, layout, description); trainA/trainB/testA/testB
CYCLEGAN: dict[str, tuple[str, str, str]] = {
    "apple2orange": ("apple2orange", "unaligned", "CycleGAN: apples <-> oranges (ImageNet)"),
    "summer2winter_yosemite": ("summer2winter_yosemite", "unaligned", "CycleGAN: Yosemite in summer <-> winter (Flickr)"),
    "horse2zebra": ("horse2zebra", "unaligned", "CycleGAN: horses <-> zebras (ImageNet)"),
    "monet2photo": ("monet2photo", "unaligned", "CycleGAN: Monet paintings <-> landscape photos"),
    "cezanne2photo": ("cezanne2photo", "unaligned", "CycleGAN: Cezanne paintings <-> landscape photos"),
    "ukiyoe2photo": ("ukiyoe2photo", "unaligned", "CycleGAN: Ukiyo-e prints <-> landscape photos"),
    "vangogh2photo": ("vangogh2photo", "unaligned", "CycleGAN: Van Gogh paintings <-> landscape photos"),
    "iphone2dslr_flower": ("iphone2dslr_flower", "unaligned", "CycleGAN: iPhone <-> DSLR flower photos (shallow depth of field)"),
    "maps": ("cyclegan_maps", "unaligned", "CycleGAN: aerial photos <-> maps, unpaired folders"),
    "cityscapes": ("cyclegan_cityscapes", "unaligned", "CycleGAN: street photos <-> labels, unpaired folders"),
    "facades": ("cyclegan_facades", "unaligned", "CycleGAN: facade photos <-> labels, unpaired folders"),
    "mini": ("mini", "unaligned", "CycleGAN: a tiny unpaired set for smoke tests"),
    "mini_pix2pix": ("mini_pix2pix", "aligned", "a tiny paired (A|B) set for smoke tests"),
    "mini_colorization": ("mini_colorization", "folder", "a tiny image folder for colorization smoke tests"),
}

@i2i.hookimpl
def register_datasets(register) -> None:
    for name, (description, terms) in PIX2PIX.items():
        register(name, url=PIX2PIX_URL.format(name), layout="aligned", subdir=name, license=terms,
                 description=description)
    for archive, (name, layout, description) in CYCLEGAN.items():
        register(name, url=CYCLEGAN_URL.format(archive), layout=layout, subdir=archive,
                 license="research use (see the CycleGAN repository)", description=description)
