"""Regenerate the small sample images in examples/photos (committed; run only to change them)."""

from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).parent / "photos"


def picture(size, colour, label):
    image = Image.new("RGB", size, colour)
    draw = ImageDraw.Draw(image)
    for i in range(0, size[0], 24):
        draw.line([(i, 0), (size[0] - i, size[1])], fill=(255, 255, 255), width=2)
    draw.rectangle([8, 8, size[0] // 3, size[1] // 4], fill=(250, 220, 40))
    draw.text((12, 12), label, fill=(0, 0, 0))
    return image


def main():
    specs = [
        ("cats/tabby.jpg", (640, 427), (120, 90, 60), 1, "Canon"),
        ("cats/black cat.jpg", (480, 640), (30, 30, 40), 6, "NIKON CORPORATION"),
        ("dogs/beagle.jpg", (800, 533), (170, 130, 80), 1, "Apple"),
        ("dogs/puppy #2.jpg", (533, 800), (200, 180, 150), 8, "Google"),
        ("birds/robin.png", (320, 240), (90, 140, 200), None, None),
        ("birds/parrot.webp", (400, 300), (40, 180, 90), None, None),
        ("field.jpg", (1024, 683), (100, 160, 70), 3, "SONY"),
    ]
    for name, size, colour, orientation, make in specs:
        path = HERE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        image = picture(size, colour, name)
        if path.suffix == ".jpg":
            exif = Image.Exif()
            exif[0x0112] = orientation
            exif[0x010F] = make
            exif[0x0110] = "Model 1"
            exif[0x0132] = "2024:05:01 10:30:00"
            image.save(path, quality=80, exif=exif)
        else:
            image.save(path)
    (HERE / "README.txt").write_text("Sample images for syncd's example config.\n")


if __name__ == "__main__":
    main()
