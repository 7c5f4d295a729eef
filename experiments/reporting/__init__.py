"""The HTML and Markdown reports people read: comparisons and calibration fits."""
