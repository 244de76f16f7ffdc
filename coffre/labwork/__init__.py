"""The lab's daily work: catalogue, orders, specimens, results, validation, reports and
analyser messages. Every result value, comment and clinical note is sealed under its
patient's data key, so erasing a patient erases their results too."""
